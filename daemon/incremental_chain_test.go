package daemon_test

import (
	"context"
	"testing"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// chainSchema is a fact table under REPLICA IDENTITY FULL, a view of it
// per account per day, and a view per month built on that one: both are
// maintained incrementally.
const chainSchema = `
CREATE TABLE app.events (id bigint PRIMARY KEY, account_id int NOT NULL, amount numeric NOT NULL, occurred_at timestamptz NOT NULL);
ALTER TABLE app.events REPLICA IDENTITY FULL;
INSERT INTO app.events SELECT g, g % 5, g % 7, timestamptz '2026-01-01 00:00+00' + g * interval '1 hour' FROM generate_series(1, 2000) g;
CREATE INDEX ON app.events (occurred_at);
CREATE MATERIALIZED VIEW app.account_days AS
  SELECT account_id, date_trunc('day', occurred_at) AS day, count(*) AS n, sum(amount) AS revenue FROM app.events GROUP BY 1, 2;
CREATE INDEX ON app.account_days (day);
CREATE MATERIALIZED VIEW app.months AS
  SELECT date_trunc('month', day) AS month, sum(n) AS n, sum(revenue) AS revenue FROM app.account_days GROUP BY 1;`

// TestIncremental_ViewOnAMaintainedView maintains a view built on a
// maintained view from the rows the base's maintenance names: an insert
// and a DELETE (the old row under REPLICA IDENTITY FULL) recompute one
// group of each, one after the other; a TRUNCATE recomputes both whole,
// each saying why.
func TestIncremental_ViewOnAMaintainedView(t *testing.T) {
	incremental := true
	e := newEnv(t, chainSchema)
	e.cfg.Views = map[string]config.View{"app.account_days": {Incremental: &incremental}, "app.months": {Incremental: &incremental}}
	e.start()
	e.settle()
	for _, v := range []string{"app.account_days", "app.months"} {
		if k := e.relkind(v); k != "r" {
			t.Fatalf("%s has relkind %q after the start: incremental maintenance was not turned on", v, k)
		}
	}
	e.forgetEvents()

	e.exec("INSERT INTO app.events VALUES (5001, 3, 100, '2026-02-03 10:00+00')")
	e.expectChain("the insert", "incremental", "", "incremental", "")

	e.exec("DELETE FROM app.events WHERE id = 10")
	e.expectChain("the DELETE", "incremental", "", "incremental", "")

	e.exec("TRUNCATE app.events")
	e.expectChain("the TRUNCATE", "full", "TRUNCATE app.events", "full", "app.account_days was recomputed whole (TRUNCATE app.events)")
}

// expectChain waits for the maintenances of app.account_days and then
// app.months after what, checks their modes and reasons in the events and
// the refresh log (one group each when incremental), and that both equal
// their definitions.
func (e *env) expectChain(what, baseMode, baseReason, depMode, depReason string) {
	e.t.Helper()
	base := e.waitEvent("the maintenance of app.account_days after "+what, func(ev events.Refresh) bool {
		return ev.View == "app.account_days" && ev.Status == events.StatusOK
	})
	dep := e.waitEvent("the maintenance of app.months after "+what, func(ev events.Refresh) bool {
		return ev.View == "app.months" && ev.Status == events.StatusOK
	})
	e.forgetEvents()
	for _, c := range []struct {
		ev         events.Refresh
		reason     events.Reason
		mode, full string
	}{{base, events.ReasonChange, baseMode, baseReason}, {dep, events.ReasonCascade, depMode, depReason}} {
		ev := c.ev
		if ev.Reason != c.reason || ev.Maintenance != c.mode || ev.FullReason != c.full || c.mode == "incremental" && deref(ev.Groups) != int64(1) {
			e.t.Errorf("after %s, %s: reason %q, maintenance %q (%q), groups %v; want reason %q, maintenance %q (%q)%s",
				what, ev.View, ev.Reason, ev.Maintenance, ev.FullReason, deref(ev.Groups), c.reason, c.mode, c.full, map[bool]string{true: ", 1 group"}[c.mode == "incremental"])
		}
		var mode, reason string
		var groups *int64
		if err := e.pool.QueryRow(context.Background(), `SELECT maintenance, coalesce(full_reason, ''), groups_recomputed
			FROM public.mv_refresh_log WHERE mv_name = $1`, ev.View).Scan(&mode, &reason, &groups); err != nil {
			e.t.Fatal(err)
		}
		if mode != ev.Maintenance || reason != ev.FullReason || deref(groups) != deref(ev.Groups) {
			e.t.Errorf("after %s, the refresh log says %s was maintained %q (%q), %v groups; its event %q (%q), %v groups",
				what, ev.View, mode, reason, deref(groups), ev.Maintenance, ev.FullReason, deref(ev.Groups))
		}
	}
	if dep.StartedAt.Before(base.FinishedAt) {
		e.t.Errorf("after %s, app.months started (%s) before app.account_days finished (%s)", what, dep.StartedAt, base.FinishedAt)
	}
	e.assertMaintained("app.account_days")
	e.assertMaintained("app.months")
}
