package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// refreshWaitingOnLock reports whether the daemon's REFRESH of view is
// blocked by a lock.
func (e *env) refreshWaitingOnLock(view string) func() (bool, error) {
	return func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'mvrefresher'
			  AND query LIKE 'REFRESH MATERIALIZED VIEW%' AND query LIKE '%' || $1 || '%'
			  AND wait_event_type = 'Lock'`, view).Scan(&n)
		return n > 0, err
	}
}

// lockView blocks the daemon's refreshes of view until the returned
// function is called. PostgreSQL does not LOCK materialized views; a
// concurrent refresh in an open transaction holds the EXCLUSIVE lock the
// daemon's refresh needs.
func (e *env) lockView(view string) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			if err := tx.Rollback(ctx); err != nil {
				e.t.Error(err)
			}
		}
	}
	e.t.Cleanup(release)
	if _, err := tx.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY "+view); err != nil {
		e.t.Fatal(err)
	}
	return release
}

func TestDaemon_SlotWaitsForTheRefresh(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	release := e.lockView("app.mv_totals")
	before := e.currentLSN()
	e.exec("INSERT INTO app.events VALUES (20, '2026-01-01', 1, 1)")
	after := e.currentLSN()
	e.waitFor("the refresh of mv_totals to wait for the lock", 30*time.Second, e.refreshWaitingOnLock(`"mv_totals"`))
	// The daemon confirms up to the pending transaction, not past it.
	e.waitFor("the slot to confirm up to the pending commit", 30*time.Second, func() (bool, error) {
		lsn, _, err := e.confirmedLSN()
		return lsn >= before, err
	})
	if lsn, _, _ := e.confirmedLSN(); lsn >= after {
		t.Fatalf("slot confirmed %s while the refresh of a change at %s..%s is still running", lsn, before, after)
	}
	release()
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	if lsn, _, _ := e.confirmedLSN(); lsn < after {
		t.Fatalf("slot confirmed %s after the refresh, want at least %s", lsn, after)
	}
}

func TestDaemon_StopLetsRunningRefreshesFinish(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		CREATE MATERIALIZED VIEW app.mv_slow AS SELECT a.id, a.name FROM app.accounts a, LATERAL pg_sleep(1) s;
		CREATE UNIQUE INDEX ON app.mv_slow (id);`)
	e.start()
	e.settle()

	e.exec("UPDATE app.accounts SET name = 'ada2' WHERE id = 1")
	e.waitFor("the slow refresh to run", 30*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'REFRESH MATERIALIZED VIEW%mv_slow%' AND state = 'active'`).Scan(&n)
		return n > 0, err
	})
	e.stop() // graceful: waits for the running refresh
	if r := e.logRow("app.mv_slow"); r.status != "ok" || r.refreshCount != 2 {
		t.Fatalf("mv_slow log row after stop: status %s count %d, want ok 2 (startup + change)", r.status, r.refreshCount)
	}
	e.assertFresh("app.mv_slow")
}

func TestDaemon_StopAfterTimeoutReplaysUnfinishedWork(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.ShutdownTimeout = 100 * time.Millisecond
	e.start()
	e.settle()

	release := e.lockView("app.mv_totals")
	e.exec("INSERT INTO app.events VALUES (30, '2026-01-01', 1, 1)")
	e.waitFor("the refresh of mv_totals to wait for the lock", 30*time.Second, e.refreshWaitingOnLock(`"mv_totals"`))
	e.stop() // the refresh is cancelled after the timeout; the change stays in the slot
	// On the server too: a REFRESH left waiting (or running) would keep its
	// locks after the daemon has gone.
	waiting := e.refreshWaitingOnLock(`"mv_totals"`)
	e.waitFor("the cancelled REFRESH to end on the server", 5*time.Second, func() (bool, error) {
		still, err := waiting()
		return !still, err
	})
	release()
	e.forgetEvents()

	e.start()
	// The change is replayed: mv_totals is refreshed (mv_big, refreshed
	// before the stop, once more: at-least-once).
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

// An idle stream does not wake the walsender ten times a second: it tells
// the server its position when that moves, and otherwise only every 10 s
// (or when the server asks). PostgreSQL records the client's time of every
// status it gets in pg_stat_replication.reply_time.
func TestDaemon_IdleStreamSendsNoStatusUntilItMoves(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	replies := map[time.Time]bool{}
	positions := map[pglogrepl.LSN]bool{}
	// Twenty status intervals: the old stream sent a status in each.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var at time.Time
		var flushed pglogrepl.LSN
		if err := e.pool.QueryRow(context.Background(), `SELECT r.reply_time, r.flush_lsn FROM pg_stat_replication r
			JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1`, e.cfg.Slot).Scan(&at, &flushed); err != nil {
			t.Fatal(err)
		}
		replies[at], positions[flushed] = true, true
	}
	// WAL written elsewhere in the cluster (a standby snapshot, autovacuum,
	// other tests' databases) moves the position the stream follows: each
	// move is worth a status, and a sample can miss a move. What must not
	// happen is a status after status with nothing new to confirm.
	if len(replies) > 2*len(positions)+1 {
		t.Fatalf("%d different status updates in 2 s for %d positions confirmed, want at most %d",
			len(replies), len(positions), 2*len(positions)+1)
	}
	// A change still gets confirmed once refreshed.
	e.exec("INSERT INTO app.events VALUES (30, '2026-02-01', 1, 1)")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
}
