package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// incrementalSchema is an append-mostly fact table under REPLICA IDENTITY
// DEFAULT (its key, id, does not carry the day a row counts in), a view of
// it maintained incrementally, a plain view built on that one with a grant
// on it, and a second view of the fact table the test keeps pending.
const incrementalSchema = `
CREATE TABLE app.events (id bigint PRIMARY KEY, amount numeric NOT NULL, occurred_at timestamptz NOT NULL);
INSERT INTO app.events SELECT g, g % 7, timestamptz '2026-01-01 00:00+00' + g * interval '1 hour' FROM generate_series(1, 2000) g;
CREATE INDEX ON app.events (occurred_at);
CREATE MATERIALIZED VIEW app.daily AS
  SELECT date_trunc('day', occurred_at) AS day, count(*) AS n, sum(amount) AS revenue FROM app.events GROUP BY 1;
CREATE UNIQUE INDEX ON app.daily (day);
COMMENT ON MATERIALIZED VIEW app.daily IS 'revenue per day';
CREATE VIEW app.daily_report AS SELECT day, revenue FROM app.daily;
CREATE ROLE mvr_incr_reader;
GRANT USAGE ON SCHEMA app TO mvr_incr_reader;
GRANT SELECT ON app.daily, app.daily_report TO mvr_incr_reader;
CREATE MATERIALIZED VIEW app.slow AS SELECT count(*) AS n FROM app.events;
CREATE UNIQUE INDEX ON app.slow (n);`

// incrementalEnv is a test's env with incrementalSchema, app.daily marked
// incremental, and the name of its reader role (a cluster's roles are
// shared: one per test).
func incrementalEnv(t *testing.T, views map[string]config.View) (*env, string) {
	t.Helper()
	return incrementalEnvOn(t, sharedCluster(t), views)
}

// incrementalEnvOn is incrementalEnv on cluster c.
func incrementalEnvOn(t *testing.T, c *localpg.Cluster, views map[string]config.View) (*env, string) {
	t.Helper()
	reader := fmt.Sprintf("reader_%d", testSeq.Load()+1)
	e := newEnvOn(t, c, strings.ReplaceAll(incrementalSchema, "mvr_incr_reader", reader))
	incremental := true
	views["app.daily"] = config.View{Incremental: &incremental}
	e.cfg.Views = views
	return e, reader
}

// maintenanceOf waits for the event of app.daily's maintenance covering
// everything committed so far, and checks that the table equals its
// definition then.
func (e *env) maintenanceOf(what string) events.Refresh {
	e.t.Helper()
	ev := e.waitEvent(what, func(ev events.Refresh) bool { return ev.View == "app.daily" && ev.Status == events.StatusOK })
	e.assertMaintained("app.daily")
	return ev
}

// assertMaintained checks that a maintained table equals its definition.
func (e *env) assertMaintained(table string) {
	e.t.Helper()
	var diff int
	q := fmt.Sprintf(`SELECT count(*) FROM ((TABLE %s EXCEPT ALL TABLE %[1]s__definition) UNION ALL (TABLE %[1]s__definition EXCEPT ALL TABLE %[1]s)) d`, table)
	if err := e.pool.QueryRow(context.Background(), q).Scan(&diff); err != nil {
		e.t.Fatalf("compare %s with its definition: %v", table, err)
	}
	if diff != 0 {
		e.t.Errorf("%s differs from its definition in %d rows", table, diff)
	}
}

func (e *env) relkind(name string) string {
	e.t.Helper()
	var kind string
	if err := e.pool.QueryRow(context.Background(), "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", name).Scan(&kind); err != nil {
		e.t.Fatal(err)
	}
	return kind
}

// TestIncremental_FollowsTheWAL turns incremental maintenance on for a
// view, and follows inserts from the WAL one group at a time; a DELETE the
// WAL does not carry the day of (REPLICA IDENTITY DEFAULT) recomputes the
// whole view, and says why; the view built on it and the grants keep
// working.
func TestIncremental_FollowsTheWAL(t *testing.T) {
	e, reader := incrementalEnv(t, map[string]config.View{})
	e.start()
	e.settle()
	if k := e.relkind("app.daily"); k != "r" {
		t.Fatalf("app.daily has relkind %q after the start: incremental maintenance was not turned on", k)
	}
	e.assertMaintained("app.daily")

	e.exec("INSERT INTO app.events VALUES (5001, 100, '2026-01-03 10:00+00'), (5002, 50, '2026-01-03 11:00+00')")
	ev := e.maintenanceOf("the maintenance after two inserts on one day")
	if ev.Maintenance != "incremental" || ev.Groups == nil || *ev.Groups != 1 || ev.RowsWritten == nil || *ev.RowsWritten != 1 {
		t.Fatalf("two inserts on one day: got maintenance %q, groups %v, rows written %v, full reason %q; want incremental, 1 group, 1 row written",
			ev.Maintenance, deref(ev.Groups), deref(ev.RowsWritten), ev.FullReason)
	}
	e.forgetEvents()

	e.exec("DELETE FROM app.events WHERE id = 10")
	ev = e.maintenanceOf("the maintenance after a DELETE")
	if ev.Maintenance != "full" || !strings.Contains(ev.FullReason, "DELETE") || !strings.Contains(ev.FullReason, "REPLICA IDENTITY DEFAULT") {
		t.Fatalf("a DELETE under REPLICA IDENTITY DEFAULT: got maintenance %q (%q), want full, saying why", ev.Maintenance, ev.FullReason)
	}
	var mode, reason string
	if err := e.pool.QueryRow(context.Background(), "SELECT maintenance, full_reason FROM public.mv_refresh_log WHERE mv_name = 'app.daily'").Scan(&mode, &reason); err != nil {
		t.Fatal(err)
	}
	if mode != "full" || reason != ev.FullReason {
		t.Errorf("the refresh log says %q (%q), the event %q (%q)", mode, reason, ev.Maintenance, ev.FullReason)
	}

	e.assertReadable(reader, "app.daily", "app.daily_report")
}

// assertReadable checks that role reads the same rows from each relation
// as the test's superuser.
func (e *env) assertReadable(role string, relations ...string) {
	e.t.Helper()
	ctx := context.Background()
	for _, rel := range relations {
		var want, got int
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&want); err != nil {
			e.t.Fatal(err)
		}
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
			e.t.Fatal(err)
		}
		err = tx.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&got)
		_ = tx.Rollback(ctx)
		if err != nil || got != want {
			e.t.Errorf("%s reads %d rows of %s (%v), want %d", role, got, rel, err, want)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestIncremental_ReplayWritesNothing restarts the daemon after a
// maintenance committed but before the slot passed its change (another
// view's pending refresh holds it): the change comes again, and the
// maintenance of it writes nothing.
func TestIncremental_ReplayWritesNothing(t *testing.T) {
	hour, zero := time.Hour, time.Duration(0)
	e, _ := incrementalEnv(t, map[string]config.View{"app.slow": {Debounce: &hour, MaxWait: &zero}})
	e.start()
	e.settle()
	e.exec("INSERT INTO app.events VALUES (5001, 100, '2026-01-05 10:00+00')")
	target := e.currentLSN()
	ev := e.maintenanceOf("the maintenance of the insert")
	if ev.Maintenance != "incremental" || deref(ev.RowsWritten) != int64(1) {
		t.Fatalf("the insert: got maintenance %q, rows written %v; want incremental, 1", ev.Maintenance, deref(ev.RowsWritten))
	}
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= target {
		t.Fatalf("the slot confirmed %s (%v) past the change at %s: app.slow's pending refresh should hold it", lsn, err, target)
	}
	e.stop()
	e.forgetEvents()
	e.cfg.Views["app.slow"] = config.View{}
	e.start()
	ev = e.maintenanceOf("the maintenance of the replayed insert")
	e.expectIncremental(ev, "the replayed insert", 0)
}

// TestIncremental_WaitsForACommitToBeVisible is the visibility rule's
// reproduction (TestDaemon_RefreshWaitsForACommitToBeVisible) with a
// maintained view: a commit decoded before other sessions see it (a
// synchronous standby that never confirms) must not be taken as included
// by a maintenance that ran meanwhile, or its group would stay wrong until
// that group changed again.
func TestIncremental_WaitsForACommitToBeVisible(t *testing.T) {
	e, _ := incrementalEnv(t, map[string]config.View{})
	e.serverSettings(map[string]string{"synchronous_standby_names": "nosuch", "synchronous_commit": "local"})
	e.start()
	e.settle()

	e.heldCommitIsMaintained()
}

// TestIncremental_OnOffOn turns incremental maintenance on, off and on
// again across restarts: the view built on it and the grants survive each
// conversion, and a view that cannot be maintained stays as it was.
func TestIncremental_OnOffOn(t *testing.T) {
	yes := true
	e, reader := incrementalEnv(t, map[string]config.View{"app.slow": {Incremental: &yes}})
	for i, on := range []bool{true, false, true} {
		e.cfg.Views["app.daily"] = config.View{Incremental: &on}
		e.start()
		e.settle()
		want := map[bool]string{true: "r", false: "m"}[on]
		if k := e.relkind("app.daily"); k != want {
			t.Fatalf("step %d (incremental %v): app.daily has relkind %q, want %q", i, on, k, want)
		}
		if on {
			e.assertMaintained("app.daily")
		} else {
			e.assertFresh("app.daily")
		}
		e.assertReadable(reader, "app.daily", "app.daily_report")
		if k := e.relkind("app.slow"); k != "m" {
			t.Fatalf("app.slow, which cannot be maintained (an aggregate without GROUP BY), has relkind %q", k)
		}
		e.stop()
	}
	if !strings.Contains(e.logs.String(), "cannot maintain the view incrementally") || !strings.Contains(e.logs.String(), "an aggregate without GROUP BY") {
		t.Errorf("the log does not say why app.slow is not maintained:\n%s", e.logs.String())
	}
}

// TestIncremental_RedefinedIsRecomputedWhole replaces a maintained view's
// definition by hand: its rows were computed from the old one, so the next
// discovery has it recomputed whole.
func TestIncremental_RedefinedIsRecomputedWhole(t *testing.T) {
	e, _ := incrementalEnv(t, map[string]config.View{})
	e.start()
	e.settle()
	e.exec(`CREATE OR REPLACE VIEW app.daily__definition AS
		SELECT date_trunc('day', occurred_at) AS day, count(*) AS n, sum(amount) AS revenue FROM app.events WHERE amount > 2 GROUP BY 1`)
	ev := e.maintenanceOf("the maintenance after the definition changed")
	if ev.Maintenance != "full" {
		t.Fatalf("after the definition changed: maintenance %q, want full", ev.Maintenance)
	}
}

// heldCommitIsMaintained runs the visibility rule's reproduction on
// app.daily (the server has a synchronous standby that never confirms): a
// commit decoded before other sessions see it is not taken as included by
// a maintenance of another day's commit meanwhile, the slot stays before
// it, and once visible its day is maintained right.
func (e *env) heldCommitIsMaintained() {
	e.t.Helper()
	release, committed := e.commitHeldByStandby("INSERT INTO app.events VALUES (7001, 1000, '2026-01-02 10:00+00')")
	e.waitFor("the daemon to find the commit not visible", 10*time.Second, func() (bool, error) {
		return strings.Contains(e.logs.String(), "not visible yet"), nil
	})
	waitingCommitEnd := e.currentLSN()
	e.forgetEvents()
	// A visible commit on another day is maintained meanwhile; the slot
	// still holds the invisible one.
	e.exec("INSERT INTO app.events VALUES (7002, 1, '2026-01-04 10:00+00')")
	ev := e.waitEvent("a maintenance with the visible commit", func(ev events.Refresh) bool {
		return ev.View == "app.daily" && ev.Status == events.StatusOK
	})
	if ev.Maintenance != "incremental" {
		e.t.Fatalf("the visible insert: maintenance %q (%q), want incremental", ev.Maintenance, ev.FullReason)
	}
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= waitingCommitEnd {
		e.t.Fatalf("the slot confirmed %s (%v) past a commit no maintenance could see (before %s)", lsn, err, waitingCommitEnd)
	}
	release()
	if err := <-committed; err != nil {
		e.t.Fatalf("the application's commit: %v", err)
	}
	e.settle()
	e.assertMaintained("app.daily")
	var n int64
	if err := e.pool.QueryRow(context.Background(), "SELECT n FROM app.daily WHERE day = '2026-01-02 00:00+00'").Scan(&n); err != nil || n != 25 {
		e.t.Errorf("the day of the commit that was late to be visible counts %d rows (%v), want 25", n, err)
	}
}

// expectIncremental checks that ev, the maintenance of what, recomputed one
// group incrementally and wrote written rows.
func (e *env) expectIncremental(ev events.Refresh, what string, written int64) {
	e.t.Helper()
	if ev.Maintenance != "incremental" || deref(ev.Groups) != int64(1) || deref(ev.RowsWritten) != written {
		e.t.Fatalf("%s: got maintenance %q (%q), groups %v, rows written %v; want incremental, 1 group, %d written",
			what, ev.Maintenance, ev.FullReason, deref(ev.Groups), deref(ev.RowsWritten), written)
	}
}
