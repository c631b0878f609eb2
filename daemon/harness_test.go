package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/wait"
)

// The PostgreSQL cluster and the NATS server the tests share: started on
// first use, so a test that needs neither runs without them, and stopped by
// TestMain.
var (
	clusterOnce     sync.Once
	startedCluster  *localpg.Cluster
	clusterStartErr error

	natsOnce     sync.Once
	startedNATS  *localnats.Server
	natsStartErr error
)

// TestMain stops the shared servers the tests started.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	code := m.Run()
	if startedNATS != nil {
		startedNATS.Shutdown()
	}
	if startedCluster != nil {
		if err := startedCluster.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
			return 1
		}
	}
	return code
}

// needsPostgreSQL skips a test that starts a PostgreSQL under -short (make
// unit), which runs only the tests that need no server.
func needsPostgreSQL(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
}

// sharedCluster returns the PostgreSQL cluster the tests share, starting it
// on first use; it fails the test if the cluster could not start.
func sharedCluster(t testing.TB) *localpg.Cluster {
	t.Helper()
	needsPostgreSQL(t)
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		startedCluster, clusterStartErr = localpg.Start(ctx, localpg.Options{})
	})
	if clusterStartErr != nil {
		t.Fatalf("integration tests need PostgreSQL binaries (initdb): %v", clusterStartErr)
	}
	return startedCluster
}

// sharedNATS returns the embedded NATS server the tests share, starting it
// on first use.
func sharedNATS(t testing.TB) *localnats.Server {
	t.Helper()
	natsOnce.Do(func() { startedNATS, natsStartErr = localnats.Start() })
	if natsStartErr != nil {
		t.Fatalf("integration tests need an embedded NATS server: %v", natsStartErr)
	}
	return startedNATS
}

// barrierSQL is added to every test schema: a view the harness asks to
// refresh through the WAL, so that its event proves every earlier event of
// the daemon has arrived.
const barrierSQL = `
CREATE TABLE app.barrier_src (id int PRIMARY KEY);
CREATE MATERIALIZED VIEW app.mv_barrier AS SELECT count(*) AS n FROM app.barrier_src;
CREATE UNIQUE INDEX ON app.mv_barrier (n);`

const barrierView = "app.mv_barrier"

var testSeq atomic.Int64

// env is one test's database, NATS subscription and daemon.
type env struct {
	t    testing.TB
	cfg  config.Config
	pool *pgxpool.Pool
	name string
	// standbyPool is the standby the daemon decodes on (see decodeOn); nil
	// when it decodes on the primary.
	standbyPool *pgxpool.Pool

	logs lockedBuffer // the daemon's log

	mu         sync.Mutex
	events     []events.Refresh
	slotEvents []events.Slot
	notify     chan struct{}

	daemon     *daemon.Daemon
	stopDaemon context.CancelFunc
	exited     chan struct{} // closed when Run returns
	runErr     error
}

// newEnv creates a database with schema app, the given SQL and the barrier
// view on the shared cluster, and a configuration managing schema app.
func newEnv(t testing.TB, schemaSQL string) *env {
	t.Helper()
	return newEnvOn(t, sharedCluster(t), schemaSQL)
}

// newEnvOn is newEnv on cluster c.
func newEnvOn(t testing.TB, cluster *localpg.Cluster, schemaSQL string) *env {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("t%d_%s", testSeq.Add(1), strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_")))
	if len(name) > 50 {
		name = name[:50]
	}
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, name: name, notify: make(chan struct{}, 1)}
	e.connect(cluster.URL(name))
	t.Cleanup(func() { e.pool.Close() })
	// After the daemon has stopped (cleanups run last first): the cluster
	// has a bounded number of slots, and each one left retains WAL.
	t.Cleanup(func() {
		if _, err := e.pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = current_database() AND NOT active`); err != nil {
			t.Errorf("drop the test's replication slots: %v", err)
		}
	})
	if _, err := e.pool.Exec(ctx, "CREATE SCHEMA app;"+barrierSQL+schemaSQL); err != nil {
		t.Fatalf("create test schema: %v", err)
	}

	nc, err := nats.Connect(sharedNATS(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(name+".>", e.receive); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.DatabaseURL = cluster.URL(name)
	cfg.Slot, cfg.Publication = name, name
	cfg.Schemas = []string{"app"}
	cfg.Debounce, cfg.MaxWait = 200*time.Millisecond, 2*time.Second
	cfg.DiscoveryInterval = 300 * time.Millisecond
	cfg.Listen = ""
	cfg.NATS.URL, cfg.NATS.SubjectPrefix = sharedNATS(t).URL(), name
	e.cfg = cfg
	return e
}

// connect makes the test's own connections go to url (a new primary after a
// failover), closing the old ones.
func (e *env) connect(url string) {
	e.t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.pool != nil {
		e.pool.Close()
	}
	e.pool = pool
}

func (e *env) receive(m *nats.Msg) {
	if m.Subject == events.SlotSubject(e.cfg.NATS.SubjectPrefix, e.cfg.Slot) {
		var s events.Slot
		if err := json.Unmarshal(m.Data, &s); err != nil {
			e.t.Errorf("undecodable slot event: %v", err)
			return
		}
		e.mu.Lock()
		e.slotEvents = append(e.slotEvents, s)
		e.mu.Unlock()
		return
	}
	var ev events.Refresh
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		e.t.Errorf("undecodable event on %s: %v", m.Subject, err)
		return
	}
	if schema, name, err := config.ParseQualifiedName(ev.View); err != nil {
		e.t.Errorf("event view %q: %v", ev.View, err)
	} else if want := events.Subject(e.cfg.NATS.SubjectPrefix, ev.Status, schema, name); m.Subject != want {
		e.t.Errorf("event for %s (%s) on subject %q, want %q", ev.View, ev.Status, m.Subject, want)
	}
	if want := events.MsgID(ev); m.Header.Get(nats.MsgIdHdr) != want {
		e.t.Errorf("event for %s has Nats-Msg-Id %q, want %q", ev.View, m.Header.Get(nats.MsgIdHdr), want)
	}
	e.mu.Lock()
	e.events = append(e.events, ev)
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// start runs the daemon until the test ends or stop is called.
func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	e.stopDaemon, e.exited = cancel, exited
	var out io.Writer = &e.logs
	if testing.Verbose() {
		out = io.MultiWriter(&e.logs, os.Stderr)
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", e.t.Name())
	d := daemon.New(e.cfg, logger)
	e.daemon = d
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

// stop stops the daemon gracefully and fails the test if Run failed.
func (e *env) stop() {
	e.t.Helper()
	var pid *int32
	if err := e.slotServer().QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", e.cfg.Slot).Scan(&pid); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		e.t.Fatal(err)
	}
	e.stopDaemon()
	e.stopDaemon = nil
	defer func() {
		// The walsender lets go of the slot a moment after the daemon closes;
		// a standby may take it over at once, so wait for this one's pid.
		e.waitFor("the daemon's walsender to release the slot", 30*time.Second, func() (bool, error) {
			var now *int32
			err := e.slotServer().QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", e.cfg.Slot).Scan(&now)
			if errors.Is(err, pgx.ErrNoRows) {
				return true, nil
			}
			return pid == nil || now == nil || *now != *pid, err
		})
	}()
	select {
	case <-e.exited:
		if e.runErr != nil {
			e.t.Fatalf("daemon stopped with error: %v", e.runErr)
		}
	case <-time.After(60 * time.Second):
		e.t.Fatal("daemon did not stop within 60s")
	}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// waitFor polls cond until it holds or the deadline passes; a daemon that
// exits meanwhile (not stopped on purpose) fails the wait at once.
func (e *env) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	e.t.Helper()
	err := wait.Until(what, timeout, func() (bool, error) {
		if ok, err := cond(); ok || err != nil {
			return ok, err
		}
		if e.exited != nil {
			select {
			case <-e.exited:
				if e.stopDaemon != nil {
					return false, fmt.Errorf("the daemon exited: %w", e.runErr)
				}
			default:
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// slotServer is a pool to the server the daemon's slot is on.
func (e *env) slotServer() *pgxpool.Pool {
	if e.standbyPool != nil {
		return e.standbyPool
	}
	return e.pool
}

func (e *env) confirmedLSN() (pglogrepl.LSN, bool, error) {
	var lsn *pglogrepl.LSN
	var active bool
	err := e.slotServer().QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn, active FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Slot).Scan(&lsn, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil // not created yet
	}
	if err != nil || lsn == nil {
		return 0, false, err
	}
	return *lsn, active, nil
}

func (e *env) currentLSN() pglogrepl.LSN {
	e.t.Helper()
	var lsn pglogrepl.LSN
	if err := e.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

// settle waits until the daemon has handled every change committed so far
// (the slot's confirmed position passed them, which it does only after their
// refreshes) and every event it published has arrived. It returns the events
// received since the previous settle, without the barrier's.
func (e *env) settle() []events.Refresh {
	e.t.Helper()
	e.waitFor("the daemon to stream from its slot", 60*time.Second, func() (bool, error) {
		_, active, err := e.confirmedLSN()
		return active, err
	})
	// A record after the slot's start: work queued at start (startup
	// refreshes) holds the slot before it.
	e.exec("SELECT pg_logical_emit_message(false, 'test', 'settle')")
	target := e.currentLSN()
	e.waitFor("the slot to confirm "+target.String(), 60*time.Second, func() (bool, error) {
		lsn, _, err := e.confirmedLSN()
		return lsn >= target, err
	})
	// The barrier's event comes after every earlier event of the daemon's
	// connection: NATS keeps a publisher's order. It is recognised by its
	// LSN, which covers the request (the request may merge into other work
	// for the barrier view).
	before := e.currentLSN()
	e.exec("SELECT pg_logical_emit_message(true, 'mvrefresher', $1)", barrierView)
	e.waitFor("the barrier event", 60*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if lsn, err := pglogrepl.ParseLSN(ev.LSN); err == nil && ev.View == barrierView && lsn > before {
				return true, nil
			}
		}
		return false, nil
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []events.Refresh
	for _, ev := range e.events {
		if ev.View != barrierView {
			out = append(out, ev)
		}
	}
	e.events = nil
	return out
}

// summary renders events as sorted "view reason status" lines, for exact
// comparisons.
func summary(evs []events.Refresh) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s %s %s", ev.View, ev.Reason, ev.Status))
	}
	sort.Strings(out)
	return out
}

func (e *env) expectEvents(got []events.Refresh, want ...string) {
	e.t.Helper()
	sort.Strings(want)
	if s := summary(got); !slices.Equal(s, want) {
		e.t.Fatalf("events:\n got  %q\n want %q", s, want)
	}
}

// assertFresh checks that each view equals a fresh run of its definition.
func (e *env) assertFresh(views ...string) {
	e.t.Helper()
	for _, v := range views {
		schema, name, err := config.ParseQualifiedName(v)
		if err != nil {
			e.t.Fatal(err)
		}
		ident := pgx.Identifier{schema, name}.Sanitize()
		var def string
		if err := e.pool.QueryRow(context.Background(), "SELECT pg_get_viewdef($1::regclass)", ident).Scan(&def); err != nil {
			e.t.Fatalf("definition of %s: %v", v, err)
		}
		def = strings.TrimSuffix(strings.TrimSpace(def), ";")
		var diff int
		q := fmt.Sprintf("SELECT count(*) FROM ((TABLE %s EXCEPT ALL (%s)) UNION ALL ((%s) EXCEPT ALL TABLE %s)) d", ident, def, def, ident)
		if err := e.pool.QueryRow(context.Background(), q).Scan(&diff); err != nil {
			e.t.Fatalf("compare %s with its definition: %v", v, err)
		}
		if diff != 0 {
			e.t.Errorf("%s differs from its definition in %d rows: it is stale", v, diff)
		}
	}
}

// logRow reads a view's row in the refresh log.
type logRow struct {
	status       string
	refreshCount int64
	lsn          *pglogrepl.LSN
	concurrently *bool
	inserted     *int64
	deleted      *int64
	err          *string
}

func (e *env) logRow(view string) logRow {
	e.t.Helper()
	var r logRow
	err := e.pool.QueryRow(context.Background(), `SELECT status, refresh_count, lsn, "concurrently", rows_inserted, rows_deleted, error
		FROM public.mv_refresh_log WHERE mv_name = $1`, view).
		Scan(&r.status, &r.refreshCount, &r.lsn, &r.concurrently, &r.inserted, &r.deleted, &r.err)
	if err != nil {
		e.t.Fatalf("refresh log row of %s: %v", view, err)
	}
	return r
}

// forgetEvents forgets the events received so far, for phases whose
// events the test does not assert.
func (e *env) forgetEvents() {
	e.mu.Lock()
	e.events = nil
	e.mu.Unlock()
}

// waitEvent waits for an event matching ok and returns it.
func (e *env) waitEvent(what string, ok func(events.Refresh) bool) events.Refresh {
	e.t.Helper()
	var found events.Refresh
	e.waitFor(what, 60*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ok(ev) {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	return found
}
