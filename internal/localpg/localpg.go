// Package localpg starts a throwaway PostgreSQL cluster in a temporary
// directory, for the demo, the tests and the benchmark.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune Start.
type Options struct {
	// Settings are extra postgresql.conf lines (name -> value), applied after
	// the defaults, e.g. {"max_slot_wal_keep_size": "64MB"}.
	Settings map[string]string
	// Logger receives progress lines (nil: silent).
	Logger *slog.Logger
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	binDir   string
	root     string // temp dir: parent of the data dir, socket dir, HOME
	dataDir  string
	logFile  string
	cred     *syscall.Credential // nil: run as ourselves
	settings map[string]string
	log      *slog.Logger

	port int // fixed once Start returns; Restart reuses it

	mu      sync.Mutex // serialises Stop and Restart
	stopped bool
}

// portAttempts bounds retries when the free port is taken before postgres
// binds it.
const portAttempts = 5

// Start runs initdb into a new temp dir and starts postgres on 127.0.0.1 and
// a free port, with wal_level=logical.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{settings: opts.Settings, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.binDir, err = findBinDir(); err != nil {
		return nil, err
	}
	if c.cred, err = serverUser(); err != nil {
		return nil, err
	}
	// A short name: the unix socket lives here and its path must fit in
	// ~107 bytes.
	if c.root, err = os.MkdirTemp("", "mvr-pg-"); err != nil {
		return nil, fmt.Errorf("localpg: create temp dir: %w", err)
	}
	c.dataDir = filepath.Join(c.root, "data")
	c.logFile = filepath.Join(c.dataDir, "postgres.log")
	if err := c.start(ctx); err != nil {
		_ = c.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := c.chown(c.root); err != nil {
		return fmt.Errorf("localpg: chown %s to postgres: %w", c.root, err)
	}
	c.log.Info("localpg: initdb", "dir", c.dataDir, "bin", c.binDir)
	if out, err := c.run(ctx, "initdb", "-D", c.dataDir, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := c.includeConf(); err != nil {
		return fmt.Errorf("initdb: configure: %w", err)
	}
	return c.launch(ctx)
}

// launch starts the server of an existing data directory on a free port.
func (c *Cluster) launch(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("localpg: find free port: %w", err)
		}
		c.port = port
		if err := c.writeConf(); err != nil {
			return fmt.Errorf("localpg: write %s: %w", confFile, err)
		}
		offset := c.logSize()
		err = c.pgCtlStart(ctx)
		if err == nil {
			break
		}
		if attempt < portAttempts && portTaken(c.logSince(offset)) {
			c.log.Warn("localpg: port taken, retrying", "port", port)
			continue
		}
		return err
	}
	return c.waitReady(ctx)
}

func (c *Cluster) pgCtlStart(ctx context.Context) error {
	c.log.Info("localpg: start postgres", "port", c.port)
	offset := c.logSize()
	out, err := c.run(ctx, "pg_ctl", "start", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("start postgres on port %d: %w\n%s\nserver log:\n%s",
			c.port, err, out, tail(c.logSince(offset), 20))
	}
	return nil
}

// waitReady connects with pgx until it works: pg_ctl -w only proves the
// postmaster accepts connections, not that our URL does.
func (c *Cluster) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start postgres on port %d: connect: %w", c.port, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Port is the TCP port postgres listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// BinDir returns the directory of the PostgreSQL binaries in use, so callers
// can find pg_recvlogical or pgbench from the same version.
func (c *Cluster) BinDir() string { return c.binDir }

// URL is a connection URL for database db as the superuser "postgres" (trust
// auth).
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable",
		c.port, url.PathEscape(db))
}

// CreateDatabase creates a database; name is quoted, so it may be anything.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %q: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// stopTimeout bounds one pg_ctl stop. A fast shutdown of an idle test
// cluster takes well under a second; one that takes longer is held up by a
// client (a walsender waiting for its client to confirm, say), which is a
// bug worth a failure, not a wait.
const stopTimeout = 20 * time.Second

// ErrStopEscalated means a shutdown did not finish in its mode within
// stopTimeout, and the server was stopped harder so that nothing outlives
// the cluster.
var ErrStopEscalated = errors.New("shutdown escalated")

// Stop shuts postgres down in fast mode and removes the directory. A fast
// shutdown that does not finish is escalated (immediate, then SIGKILL) and
// reported as ErrStopEscalated. Safe to call twice.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	err := c.shutdown(ctx, "fast")
	if rmErr := os.RemoveAll(c.root); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("stop postgres: remove %s: %w", c.root, rmErr))
	}
	return err
}

// Restart stops the server (mode "fast" or "immediate"; immediate simulates a
// crash) and starts it again on the same port and data dir. A fast shutdown
// that does not finish within stopTimeout fails the restart with
// ErrStopEscalated (the server is stopped harder and started again, so that
// later users of the cluster find it running).
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("restart postgres: unknown mode %q (want fast or immediate)", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("restart postgres: cluster already stopped")
	}
	stopErr := c.shutdown(ctx, mode)
	if stopErr != nil && !errors.Is(stopErr, ErrStopEscalated) {
		return stopErr
	}
	if err := c.pgCtlStart(ctx); err != nil {
		return errors.Join(stopErr, err)
	}
	return errors.Join(stopErr, c.waitReady(ctx))
}

// shutdown stops the server with mode. If that does not finish, it
// escalates to immediate and then to SIGKILL, so no postgres process
// outlives it, and returns ErrStopEscalated with what the server log said.
func (c *Cluster) shutdown(ctx context.Context, mode string) error {
	pid := c.postmasterPID()
	if pid == 0 {
		return nil // never started, or already gone
	}
	offset := c.logSize()
	modes := []string{mode}
	if mode != "immediate" {
		modes = append(modes, "immediate")
	}
	var failed []string
	for _, m := range modes {
		c.log.Info("localpg: stop postgres", "port", c.port, "mode", m)
		out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", m, "-w", "-t", strconv.Itoa(int(stopTimeout.Seconds())))
		// pg_ctl returns once the pid file is gone, a moment before the
		// postmaster has exited.
		if err == nil && exited(pid, 5*time.Second) {
			return escalated(failed, c.logSince(offset))
		}
		failed = append(failed, fmt.Sprintf("pg_ctl stop -m %s: %v %s", m, err, strings.TrimSpace(out)))
	}
	if err := killServer(pid); err != nil {
		return fmt.Errorf("stop postgres on port %d: %w", c.port, err)
	}
	// A killed postmaster leaves its pid file; pg_ctl start copes, but
	// removing it avoids a stale-lock check against a recycled pid.
	_ = os.Remove(filepath.Join(c.dataDir, "postmaster.pid"))
	return escalated(failed, c.logSince(offset))
}

func escalated(failed []string, serverLog string) error {
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s\nserver log:\n%s", ErrStopEscalated, strings.Join(failed, "; "), tail(serverLog, 20))
}

// postmasterPID reads the first line of postmaster.pid; 0 if absent.
func (c *Cluster) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
