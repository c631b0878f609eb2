package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/events"
)

// holdAdvisoryLock takes the advisory lock every refresh of view takes,
// without a transaction, until the returned function is called.
func (e *env) holdAdvisoryLock(view string) (release func()) {
	e.t.Helper()
	return e.holdSessionLock("SELECT pg_advisory_lock(x'6d767200'::int, hashtext($1))", view)
}

// holdSessionLock runs a statement taking session-level advisory locks,
// and keeps them until the returned function is called.
func (e *env) holdSessionLock(sql string, args ...any) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		e.t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
				e.t.Error(err)
			}
			conn.Release()
		}
	}
	e.t.Cleanup(release)
	return release
}

// lockLogRow locks view's row in the refresh log in an open transaction
// until the returned function is called.
func (e *env) lockLogRow(view string) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM public.mv_refresh_log WHERE mv_name = $1 FOR UPDATE", view); err != nil {
		e.t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			tx.Rollback(ctx) // nothing written
		}
	}
	e.t.Cleanup(release)
	return release
}

// waiting reports whether a statement of the daemon matching the LIKE
// pattern waits for a lock.
func (e *env) waiting(pattern string) func() (bool, error) {
	return func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'mvrefresher'
			  AND query LIKE $1 AND wait_event_type = 'Lock'`, pattern).Scan(&n)
		return n > 0, err
	}
}

// A slot created anew (lost and recreated, or teardown then run) streams
// nothing written before it, so every view owes a startup refresh. That
// debt must survive a crash before the refreshes are done, even for views
// the log says were refreshed before.
func TestDaemon_StartupDebtSurvivesACrash(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.ShutdownTimeout, e.cfg.LockTimeout = 100*time.Millisecond, 0
	e.start()
	e.settle()
	e.stop()

	e.exec("SELECT pg_drop_replication_slot($1)", e.cfg.Slot)
	e.exec("INSERT INTO app.events VALUES (40, '2026-04-01', 1, 7)") // no slot: never streamed
	// Not lockView: creating a slot waits for transactions with writes (or
	// an ACCESS EXCLUSIVE lock) to end.
	release := e.holdAdvisoryLock("app.mv_totals")
	e.start()
	e.waitFor("the startup refresh of mv_totals to wait for its lock", 30*time.Second, e.waiting("SELECT pg_advisory_xact_lock%"))
	// The other views' startup refreshes are done (they wait for the
	// transactions running at the start, such as an autovacuum's ANALYZE).
	for _, v := range []string{"app.mv_big", quotedView} {
		e.waitEvent("the startup refresh of "+v, func(ev events.Refresh) bool {
			return ev.View == v && ev.Status == events.StatusOK
		})
	}
	for _, v := range []string{"app.mv_totals", "app.mv_grand"} {
		if r := e.logRow(v); r.lsn != nil {
			t.Fatalf("%s: lsn %s in the log while its startup refresh is outstanding, want NULL (owed)", v, r.lsn)
		}
	}
	e.stop() // the refresh is cancelled: for the log, as good as a crash
	release()
	e.forgetEvents()

	e.start()
	e.expectEvents(e.settle(), "app.mv_totals startup ok", "app.mv_grand startup ok")
	e.assertFresh(allViews...)
	if r := e.logRow("app.mv_totals"); r.lsn == nil {
		t.Fatal("mv_totals still owes a refresh after it")
	}
}

// A partition detached while the daemon runs changes the views without a
// row change in the WAL. The refresh that follows is owed in the log until
// it is done, so a crash before it cannot lose it.
func TestDaemon_DetachDebtSurvivesACrash(t *testing.T) {
	e := newEnv(t, schemaSQL)
	// The debounce leaves the test time to lock the log row between the
	// mark and the refresh. No lock on the view would do: it would block
	// the DETACH.
	e.cfg.ShutdownTimeout, e.cfg.LockTimeout = 100*time.Millisecond, 0
	e.cfg.Debounce, e.cfg.MaxWait = 10*time.Second, 20*time.Second
	e.start()
	e.settle()

	e.exec("ALTER TABLE app.events DETACH PARTITION app.events_2025")
	e.waitFor("mv_totals to owe a refresh in the log", 30*time.Second, func() (bool, error) {
		var owed bool
		err := e.pool.QueryRow(context.Background(), "SELECT lsn IS NULL FROM public.mv_refresh_log WHERE mv_name = 'app.mv_totals'").Scan(&owed)
		return owed, err
	})
	release := e.lockLogRow("app.mv_totals")
	e.waitFor("the refresh of mv_totals to wait for its log row", 30*time.Second, e.waiting("%INSERT INTO%mv_refresh_log%"))
	e.stop()
	release()
	e.forgetEvents()

	e.start()
	evs := e.settle()
	e.assertFresh(allViews...)
	found := false
	for _, ev := range evs {
		found = found || (ev.View == "app.mv_totals" && ev.Reason == "startup")
	}
	if !found {
		t.Fatalf("no startup refresh of mv_totals after the restart: %q", summary(evs))
	}
}

// Somebody changed the daemon's publication: a row filter, a column list,
// fewer operations, a whole schema. The daemon puts it back, or it would
// miss changes (and a schema would publish tables without a key).
func TestDaemon_RepairsItsPublication(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		CREATE SCHEMA other;
		CREATE TABLE other.t (id int);  -- no key: publishing it breaks its UPDATEs`)
	// A row filter on a partitioned table also makes PostgreSQL refuse
	// publish_via_partition_root = false until the table is dropped.
	e.exec(`CREATE PUBLICATION "` + e.cfg.Publication + `" FOR TABLE app.accounts (id, name) WHERE (id > 1),
		app.events WHERE (amount > 100), app.unrelated (id) WITH (publish = 'insert', publish_via_partition_root = true)`)
	e.start()
	e.settle()
	e.exec("UPDATE app.accounts SET name = 'ada2' WHERE id = 1")
	e.expectEvents(e.settle(), "app.mv_big change ok", quotedView+" change ok")
	e.exec("UPDATE app.events SET amount = amount + 1 WHERE id = 1")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.stop()

	// PostgreSQL 15 allows TABLES IN SCHEMA only without column lists.
	e.exec(`ALTER PUBLICATION "` + e.cfg.Publication + `" ADD TABLES IN SCHEMA other`)
	e.start()
	e.settle()
	e.exec("INSERT INTO other.t VALUES (1)")
	e.exec("UPDATE other.t SET id = 2")
	e.assertFresh(allViews...)

	var filters, schemas int
	var publishesAll bool
	if err := e.pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM pg_publication_rel r WHERE r.prpubid = p.oid AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL)),
		       (SELECT count(*) FROM pg_publication_namespace n WHERE n.pnpubid = p.oid),
		       p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate
		FROM pg_publication p WHERE p.pubname = $1`, e.cfg.Publication).Scan(&filters, &schemas, &publishesAll); err != nil {
		t.Fatal(err)
	}
	if filters != 0 || schemas != 0 || !publishesAll {
		t.Fatalf("publication after start: %d filtered tables, %d schemas, publishes all operations %v; want 0, 0, true", filters, schemas, publishesAll)
	}
}

// A base whose refresh owed more than the WAL can replay (here: its failure
// was recorded, so the slot moved on) passes the debt on to the views built
// on it when it finally succeeds: their cascade must survive a crash.
func TestDaemon_CascadeDebtSurvivesACrash(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.LockTimeout = 200 * time.Millisecond
	e.start()
	e.settle()

	release := e.lockView("app.mv_totals")
	e.exec("INSERT INTO app.events VALUES (50, '2026-06-01', 1, 5)")
	e.waitFor("the failure of mv_totals to be recorded", 30*time.Second, func() (bool, error) {
		var status string
		err := e.pool.QueryRow(context.Background(), "SELECT status FROM public.mv_refresh_log WHERE mv_name = 'app.mv_totals'").Scan(&status)
		return status == "failed", err
	})
	e.stop()
	release()
	e.forgetEvents()

	// Restarted, mv_totals is retried and succeeds; its cascade to
	// mv_grand waits for a lock, and the daemon stops before it is done.
	e.cfg.LockTimeout, e.cfg.ShutdownTimeout = 0, 100*time.Millisecond
	releaseGrand := e.holdAdvisoryLock("app.mv_grand")
	e.start()
	e.waitFor("the cascade to mv_grand to wait for its lock", 30*time.Second, e.waiting("SELECT pg_advisory_xact_lock%"))
	if r := e.logRow("app.mv_grand"); r.lsn != nil {
		t.Fatalf("mv_grand: lsn %s in the log while its cascade is outstanding, want NULL (owed)", r.lsn)
	}
	e.stop()
	releaseGrand()
	e.forgetEvents()

	e.start()
	e.expectEvents(e.settle(), "app.mv_grand startup ok")
	e.assertFresh(allViews...)
}
