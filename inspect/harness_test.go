package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/inspect"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
	"github.com/mvrefresher/mvrefresher/internal/wait"
)

// env is one test's throwaway PostgreSQL, a configuration managing its
// schema app, and a daemon run on demand.
type env struct {
	t    *testing.T
	cfg  config.Config
	pool *pgxpool.Pool
	// stopDaemon is set while a daemon runs; exited is closed when its Run
	// returns runErr.
	stopDaemon context.CancelFunc
	exited     chan struct{}
	runErr     error
}

// newEnv starts PostgreSQL for one test and creates schema app with sql in
// its postgres database.
func newEnv(t *testing.T, sql string) *env {
	t.Helper()
	ctx := context.Background()
	cluster := pgtest.Start(t, localpg.Options{})
	pool, err := pgxpool.New(ctx, cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA app;"+sql); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	cfg := config.Default()
	cfg.DatabaseURL = cluster.URL("postgres")
	cfg.Schemas = []string{"app"}
	cfg.Debounce, cfg.MaxWait = 200*time.Millisecond, 2*time.Second
	cfg.Listen = ""
	return &env{t: t, cfg: cfg, pool: pool}
}

// status opens an Inspector and reads the status report.
func (e *env) status() (inspect.StatusReport, error) {
	ctx := context.Background()
	in, err := inspect.Open(ctx, e.cfg)
	if err != nil {
		return inspect.StatusReport{}, err
	}
	defer in.Close()
	return in.Status(ctx)
}

// start runs the daemon until the test ends or stop is called.
func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	e.stopDaemon, e.exited = cancel, exited
	d := daemon.New(e.cfg, slog.New(slog.DiscardHandler))
	go func() {
		e.runErr = d.Run(ctx)
		close(exited)
	}()
	e.t.Cleanup(func() {
		if e.stopDaemon != nil {
			e.stop()
		}
	})
}

// settle waits until the daemon streams from its slot and has confirmed a
// record written after that: its startup refreshes, which hold the slot
// back, are done.
func (e *env) settle() {
	e.t.Helper()
	e.waitFor("the daemon to stream from its slot", func() (bool, error) {
		_, active, err := e.slot()
		return active, err
	})
	// A record after the slot's start: the startup refreshes hold the slot
	// before it.
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, "SELECT pg_logical_emit_message(false, 'test', 'settle')"); err != nil {
		e.t.Fatal(err)
	}
	var target pglogrepl.LSN
	if err := e.pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&target); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("the slot to confirm "+target.String(), func() (bool, error) {
		confirmed, _, err := e.slot()
		return confirmed >= target, err
	})
}

// stop stops the daemon gracefully, fails the test if Run failed, and
// waits for its walsender to let go of the slot.
func (e *env) stop() {
	e.t.Helper()
	e.stopDaemon()
	e.stopDaemon = nil
	select {
	case <-e.exited:
		if e.runErr != nil {
			e.t.Fatalf("daemon stopped with error: %v", e.runErr)
		}
	case <-time.After(60 * time.Second):
		e.t.Fatal("daemon did not stop within 60s")
	}
	e.waitFor("the daemon's walsender to release the slot", func() (bool, error) {
		_, active, err := e.slot()
		return !active, err
	})
}

// slot reads the slot's confirmed position and whether a walsender streams
// from it; a slot not created yet has neither.
func (e *env) slot() (confirmed pglogrepl.LSN, active bool, err error) {
	var lsn *pglogrepl.LSN
	err = e.pool.QueryRow(context.Background(), `SELECT confirmed_flush_lsn, active FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Slot).
		Scan(&lsn, &active)
	if errors.Is(err, pgx.ErrNoRows) || lsn == nil {
		return 0, false, nil
	}
	return *lsn, active, err
}

// waitFor polls cond for up to a minute; a daemon that exits meanwhile
// fails the wait at once.
func (e *env) waitFor(what string, cond func() (bool, error)) {
	e.t.Helper()
	err := wait.Until(what, time.Minute, func() (bool, error) {
		if ok, err := cond(); ok || err != nil {
			return ok, err
		}
		if e.stopDaemon != nil {
			select {
			case <-e.exited:
				return false, fmt.Errorf("the daemon exited: %w", e.runErr)
			default:
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// serverMajor is the PostgreSQL major version.
func (e *env) serverMajor() int {
	e.t.Helper()
	var version int
	if err := e.pool.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		e.t.Fatal(err)
	}
	return version / 10000
}
