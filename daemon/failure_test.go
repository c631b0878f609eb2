package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/events"
)

func TestDaemon_FailingViewIsRecordedRetriedAndDoesNotHoldTheSlot(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.t (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO app.t VALUES (1, 5);
		CREATE MATERIALIZED VIEW app.mv_fragile AS SELECT id, 100 / v AS q FROM app.t;
		CREATE UNIQUE INDEX ON app.mv_fragile (id);
		CREATE MATERIALIZED VIEW app.mv_sturdy AS SELECT count(*) AS n FROM app.t;
		CREATE UNIQUE INDEX ON app.mv_sturdy (n);`)
	e.start()
	e.expectEvents(e.settle(), "app.mv_fragile startup ok", "app.mv_sturdy startup ok")

	// Division by zero at refresh time: every attempt fails.
	e.exec("INSERT INTO app.t VALUES (2, 0)")
	failed := e.waitEvent("a failed event for mv_fragile", func(ev events.Refresh) bool {
		return ev.View == "app.mv_fragile" && ev.Status == events.StatusFailed
	})
	if !strings.Contains(failed.Error, "division by zero") || failed.Reason != events.ReasonChange || failed.Attempt != 1 {
		t.Errorf("failed event: reason %s attempt %d error %q", failed.Reason, failed.Attempt, failed.Error)
	}
	// The other view is refreshed; the failure is in the log; the slot is
	// not held by the failing view (settle waits for the slot to pass).
	e.waitEvent("mv_sturdy refreshed", func(ev events.Refresh) bool {
		return ev.View == "app.mv_sturdy" && ev.Status == events.StatusOK && ev.Reason == events.ReasonChange
	})
	e.settle()
	if r := e.logRow("app.mv_fragile"); r.status != "failed" || r.err == nil || !strings.Contains(*r.err, "division by zero") || r.refreshCount != 1 {
		t.Errorf("log row of the failing view: %+v", r)
	}
	// It is retried with backoff, without any new change.
	e.waitEvent("a retry of mv_fragile", func(ev events.Refresh) bool {
		return ev.View == "app.mv_fragile" && ev.Status == events.StatusFailed && ev.Attempt >= 2
	})

	// Fixing the data makes the next attempt succeed.
	e.exec("DELETE FROM app.t WHERE v = 0")
	e.waitEvent("mv_fragile refreshed again", func(ev events.Refresh) bool {
		return ev.View == "app.mv_fragile" && ev.Status == events.StatusOK
	})
	e.settle()
	if r := e.logRow("app.mv_fragile"); r.status != "ok" || r.err != nil || r.refreshCount != 2 {
		t.Errorf("log row after recovery: %+v", r)
	}
	e.assertFresh("app.mv_fragile", "app.mv_sturdy")
}

// During a takeover the old instance can still be refreshing a view, with a
// snapshot older than the change the new one wants refreshed. The new
// instance waits for the view's advisory lock within lock_timeout; when that
// runs out, its failure is not recorded (the old refresh's ok would
// overwrite it) and it keeps its hold on the slot until its own refresh has
// run.
func TestDaemon_BusyViewLockKeepsItsHold(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.LockTimeout = 300 * time.Millisecond
	e.start()
	e.settle()

	ctx := context.Background()
	other, err := pgx.Connect(ctx, e.cfg.DatabaseURL) // the other instance
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext('app.mv_totals'))", int32(0x6d767200)); err != nil {
		t.Fatal(err)
	}
	e.exec("INSERT INTO app.events VALUES (44, '2026-01-01', 1, 1)")
	after := e.currentLSN()
	e.waitEvent("a refresh of mv_totals to fail on the lock", func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Status == events.StatusFailed
	})
	if r := e.logRow("app.mv_totals"); r.status != "ok" {
		t.Errorf("a refresh that did not get the view's lock was recorded: %+v", r)
	}
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= after {
		t.Errorf("slot confirmed %s (%v) past a change whose refresh did not get the lock", lsn, err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("mv_totals refreshed once the lock is free", func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Status == events.StatusOK
	})
	e.settle()
	e.assertFresh(allViews...)
}
