package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/inspect"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// decodeOn points the daemon's stream at standby (replication_url), and the
// harness's slot reads with it.
func (e *env) decodeOn(standby *localpg.Cluster) {
	e.t.Helper()
	e.cfg.ReplicationURL = standby.URL(e.name)
	pool, err := pgxpool.New(context.Background(), e.cfg.ReplicationURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.standbyPool = pool
	e.t.Cleanup(pool.Close)
	e.waitFor("the standby to have the test's database", 10*time.Second, func() (bool, error) {
		return pool.Ping(context.Background()) == nil, nil
	})
	e.t.Cleanup(func() {
		// The standby keeps WAL for its slots too; it is a test's own.
		_, _ = pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = current_database() AND NOT active`)
	})
}

// fastFeedback makes a standby send its hot_standby_feedback every second
// instead of every 10 s: a slot created there waits for it.
var fastFeedback = map[string]string{"wal_receiver_status_interval": "1s"}

// logicalSlots lists the logical slots of the test's database on the server
// behind pool.
func (e *env) logicalSlots(pool *pgxpool.Pool) []string {
	e.t.Helper()
	var slots []string
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(slot_name::text), '{}') FROM pg_replication_slots
		WHERE slot_type = 'logical' AND database = current_database()`).Scan(&slots); err != nil {
		e.t.Fatal(err)
	}
	return slots
}

// With replication_url on a standby, the slot lives there and the primary
// has none: the views stay equal to their definitions, through a restart of
// the standby too, and neither server retains WAL for the slot.
func TestDaemon_DecodesOnAStandby(t *testing.T) {
	if serverMajor(t) < 16 {
		t.Run("PostgreSQL 15 refuses", testStandbyDecodingRefusedOn15)
		return
	}
	// The standby sends its hot_standby_feedback every 10 s: the daemon
	// must wait for it before its refreshes churn the catalog.
	primary, standby := startPair(t, nil, nil)
	e := newEnvOn(t, primary, schemaSQL)
	e.decodeOn(standby)
	e.start()
	// The primary is idle: without the daemon asking it for a
	// running-transactions record, the slot's creation would wait for the
	// background writer's, up to 15 s.
	e.waitFor("the slot's creation on the standby", 5*time.Second, func() (bool, error) {
		lsn, _, err := e.confirmedLSN() // a slot being created has none yet
		return lsn != 0, err
	})
	e.settle()
	e.assertFresh(allViews...)

	next := e.writeLoad(2*time.Second, 1000, "on")
	if evs := e.settle(); slices.ContainsFunc(evs, func(ev events.Refresh) bool { return ev.Reason == events.ReasonStartup }) ||
		strings.Contains(e.logs.String(), "invalidated") {
		t.Fatalf("the slot was lost on the standby (%q):\n%s", summary(evs), e.logs.String())
	}
	e.assertFresh(allViews...)
	if slots := e.logicalSlots(e.pool); len(slots) > 0 {
		t.Errorf("logical slots on the primary: %v, want none", slots)
	}
	e.expectNoPrimaryRetention()

	ctx := context.Background()
	if err := standby.Restart(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	e.standbyPool.Reset() // its connections died with the server
	e.exec(fmt.Sprintf("INSERT INTO app.events VALUES (%d, '2026-05-03', 1, 7)", next))
	e.settle()
	e.assertFresh(allViews...)

	in, err := inspect.Open(ctx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	status, err := in.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !status.Stream.Standby || !strings.HasPrefix(status.Stream.DecodingOn, "standby ") || !status.Slot.Exists || !status.Slot.Active {
		t.Errorf("status: stream %+v, slot %+v: want an active slot on the standby", status.Stream, status.Slot)
	}
}

// expectNoPrimaryRetention fails unless the primary's physical slot for the
// standby keeps no WAL from before the last settle: decoding there holds
// nothing back on the primary.
func (e *env) expectNoPrimaryRetention() {
	e.t.Helper()
	confirmed, _, err := e.confirmedLSN()
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("the primary's physical slot to pass what the daemon confirmed", 10*time.Second, func() (bool, error) {
		var restart *pglogrepl.LSN
		err := e.pool.QueryRow(context.Background(), `SELECT min(restart_lsn) FROM pg_replication_slots`).Scan(&restart)
		return restart != nil && *restart >= confirmed, err
	})
}

// On PostgreSQL 15 a standby cannot decode: the daemon says so and exits.
func testStandbyDecodingRefusedOn15(t *testing.T) {
	primary, standby := startPair(t, nil, nil)
	e := newEnvOn(t, primary, schemaSQL)
	e.decodeOn(standby)
	e.expectStartError("decoding on a standby needs PostgreSQL 16 or later")
}

// expectStartError runs the daemon and expects it to exit with an error
// containing want, having created nothing on the primary.
func (e *env) expectStartError(want string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := daemon.New(e.cfg, slog.New(slog.DiscardHandler)).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), want) {
		e.t.Fatalf("daemon with replication_url %s: got %v, want an error saying %q", e.cfg.ReplicationURL, err, want)
	}
	var publications int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_publication").Scan(&publications); err != nil {
		e.t.Fatal(err)
	}
	if publications > 0 || len(e.logicalSlots(e.pool)) > 0 {
		e.t.Errorf("a refused start left %d publication(s) and slots %v on the primary", publications, e.logicalSlots(e.pool))
	}
}

// A replication_url the daemon cannot decode on is refused at start, with
// what to do about it.
func TestDaemon_ReplicationURLRefusals(t *testing.T) {
	t.Run("not a standby of the primary", func(t *testing.T) {
		primary, _ := startPair(t, nil, nil)
		e := newEnvOn(t, primary, schemaSQL)
		if err := sharedCluster(t).CreateDatabase(context.Background(), e.name); err != nil {
			t.Fatal(err)
		}
		e.cfg.ReplicationURL = sharedCluster(t).URL(e.name)
		e.expectStartError("is not a standby of database_url's server")
	})
	if serverMajor(t) < 16 {
		return // every standby is refused for its version (TestDaemon_DecodesOnAStandby)
	}
	t.Run("hot_standby_feedback off", func(t *testing.T) {
		primary, standby := startPair(t, nil, map[string]string{"hot_standby_feedback": "off"})
		e := newEnvOn(t, primary, schemaSQL)
		e.decodeOn(standby)
		e.expectStartError("hot_standby_feedback is off on the standby")
	})
	t.Run("a promoted standby beside its old primary", func(t *testing.T) {
		primary, standby := startPair(t, nil, nil)
		e := newEnvOn(t, primary, schemaSQL)
		e.decodeOn(standby)
		if err := standby.Promote(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.expectStartError("the server is a primary, and not database_url's server")
	})
}

// The slot on a standby never confirms a change before the standby has the
// refresh that included it: otherwise a failover to that standby, which
// has the change but not the refresh, would leave the view without it. The
// standby stops receiving WAL (its walreceiver is cut off) between
// decoding a change and the primary's refresh of it; the primary dies and
// the standby is promoted. The daemon, given both hosts, refreshes the
// change again on the new primary.
func TestDaemon_StandbyFailoverKeepsAnUnreplayedRefresh(t *testing.T) {
	if serverMajor(t) < 16 {
		t.Run("PostgreSQL 15 refuses", testStandbyDecodingRefusedOn15)
		return
	}
	primary, standby := startPair(t, nil, fastFeedback)
	e := newEnvOn(t, primary, schemaSQL)
	e.decodeOn(standby)
	both := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		primary.Port(), standby.Port(), e.name)
	e.cfg.DatabaseURL = both
	e.start()
	e.settle()

	ctx := context.Background()
	// By the time the refresh waits, its change has been decoded on the
	// standby.
	release := e.holdRefreshOfTotals(5000)
	if _, err := e.standbyPool.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.standbyPool.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	// The reload reaches the standby's startup process a moment later; a
	// walreceiver cut off waits wal_retrieve_retry_interval (5 s) before it
	// connects again, by which time it has no primary_conninfo.
	if _, err := e.pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'standby1'"); err != nil {
		t.Fatal(err)
	}
	standbyStreams := func() (bool, error) {
		var streaming int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1'").Scan(&streaming)
		return streaming > 0, err
	}
	e.waitFor("the standby to stop receiving WAL", 10*time.Second, func() (bool, error) {
		streams, err := standbyStreams()
		return !streams, err
	})
	release()
	refreshed := e.waitEvent("the refresh on the primary", func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Status == events.StatusOK
	})
	afterRefresh := time.Now()
	inserted, err := pglogrepl.ParseLSN(refreshed.LSN)
	if err != nil {
		t.Fatal(err)
	}
	// A position that may be confirmed is sent within 100 ms, and one
	// already sent every 10 s.
	e.waitFor("the daemon to tell the standby its position since the refresh", 15*time.Second, func() (bool, error) {
		var replied *time.Time
		err := e.standbyPool.QueryRow(ctx, `SELECT max(reply_time) FROM pg_stat_replication WHERE application_name = 'mvrefresher'`).Scan(&replied)
		return replied != nil && replied.After(afterRefresh), err
	})
	if streams, err := standbyStreams(); err != nil || streams {
		t.Fatalf("the standby streams from the primary again (%v): the test cannot tell what it has", err)
	}
	if confirmed, _, err := e.confirmedLSN(); err != nil || confirmed >= inserted {
		t.Fatalf("the standby's slot confirmed %s (%v), past the change at %s whose refresh the standby does not have", confirmed, err, inserted)
	}

	if err := primary.Halt(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	e.connect(both)
	e.settle()
	e.assertFresh(allViews...)
}

// A fast shutdown of the standby the daemon decodes on is not held up by a
// refresh running on the primary: the stream lets go of the standby at
// once, however long the refresh would have it wait (shutdown_timeout),
// and the change that refresh was for stays in the slot, to be refreshed
// once the standby is back.
func TestDaemon_StandbyFastShutdownIsNotHeldUpByARefresh(t *testing.T) {
	if serverMajor(t) < 16 {
		t.Run("PostgreSQL 15 refuses", testStandbyDecodingRefusedOn15)
		return
	}
	primary, standby := startPair(t, nil, fastFeedback)
	e := newEnvOn(t, primary, schemaSQL)
	e.decodeOn(standby)
	e.cfg.ShutdownTimeout = 15 * time.Second
	e.start()
	e.settle()

	ctx := context.Background()
	release := e.holdRefreshOfTotals(5001)

	began := time.Now()
	if err := standby.Halt(ctx, "fast"); err != nil {
		t.Fatalf("fast shutdown of the standby with a refresh running on the primary: %v", err)
	}
	// An idle standby stops in well under a second; the refresh would hold
	// it up for the whole shutdown_timeout.
	took := time.Since(began)
	if took >= e.cfg.ShutdownTimeout/5 {
		t.Errorf("fast shutdown of the standby took %v with a refresh running on the primary (shutdown_timeout %v)", took.Round(time.Millisecond), e.cfg.ShutdownTimeout)
	}
	t.Logf("fast shutdown of the standby with a refresh running on the primary: %v", took.Round(time.Millisecond))
	if err := standby.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	e.standbyPool.Reset() // its connections died with the server
	release()
	// The slot confirms the change only after a refresh that includes it,
	// which the stream it was sent to could no longer confirm.
	e.settle()
	e.assertFresh(allViews...)
}

// holdRefreshOfTotals inserts the event id into app.events and holds the
// advisory lock the refresh of app.mv_totals takes, on the primary, until
// that refresh waits for it, and until the returned function is called.
func (e *env) holdRefreshOfTotals(id int) (release func()) {
	e.t.Helper()
	release = e.holdAdvisoryLock("app.mv_totals")
	e.exec("INSERT INTO app.events VALUES ($1, '2026-05-05', 1, 42)", id)
	e.waitFor("the refresh of mv_totals to wait for its lock", 10*time.Second, func() (bool, error) {
		var waiting int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'mvrefresher' AND wait_event = 'advisory'`).Scan(&waiting)
		return waiting > 0, err
	})
	return release
}
