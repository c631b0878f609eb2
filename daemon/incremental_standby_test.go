package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/config"
)

// TestIncremental_DecodesOnAStandby is TestIncremental_FollowsTheWAL and
// TestIncremental_WaitsForACommitToBeVisible with the stream on a standby
// (replication_url): the view is converted on the primary, the changed
// rows come from the standby's slot, and the maintenances, written on the
// primary, follow them one group at a time. A commit the standby has
// replayed but the primary does not show yet (it waits for a synchronous
// standby that never confirms) is not taken as included; a DELETE the WAL
// does not carry the day of recomputes the view whole, saying why.
func TestIncremental_DecodesOnAStandby(t *testing.T) {
	if serverMajor(t) < 16 {
		t.Run("PostgreSQL 15 refuses, converting nothing", testIncrementalStandbyRefusedOn15)
		return
	}
	// Only the application's session waits for the synchronous standby
	// (commitHeldByStandby); standby1 is asynchronous and replays its commit.
	primary, standby := startPair(t, map[string]string{"synchronous_standby_names": "nosuch", "synchronous_commit": "local"}, fastFeedback)
	e, _ := incrementalEnvOn(t, primary, map[string]config.View{})
	e.decodeOn(standby)
	e.start()
	e.settle()
	if k := e.relkind("app.daily"); k != "r" {
		t.Fatalf("app.daily has relkind %q after the start: incremental maintenance was not turned on", k)
	}
	e.assertMaintained("app.daily")
	if slots := e.logicalSlots(e.pool); len(slots) > 0 {
		t.Errorf("logical slots on the primary: %v, want none", slots)
	}

	e.exec("INSERT INTO app.events VALUES (5001, 100, '2026-01-03 10:00+00'), (5002, 50, '2026-01-03 11:00+00')")
	ev := e.maintenanceOf("the maintenance after two inserts on one day")
	e.expectIncremental(ev, "two inserts on one day", 1)
	e.expectLoggedMaintenance("incremental", "", 1)

	e.heldCommitIsMaintained()

	e.exec("DELETE FROM app.events WHERE id = 10")
	ev = e.maintenanceOf("the maintenance after a DELETE")
	if ev.Maintenance != "full" || !strings.Contains(ev.FullReason, "DELETE") || !strings.Contains(ev.FullReason, "REPLICA IDENTITY DEFAULT") {
		t.Fatalf("a DELETE under REPLICA IDENTITY DEFAULT: got maintenance %q (%q), want full, saying why", ev.Maintenance, ev.FullReason)
	}
	e.expectLoggedMaintenance("full", ev.FullReason, -1)
}

// On PostgreSQL 15 a standby cannot decode: the daemon says so and exits
// before converting anything.
func testIncrementalStandbyRefusedOn15(t *testing.T) {
	primary, standby := startPair(t, nil, nil)
	e, _ := incrementalEnvOn(t, primary, map[string]config.View{})
	e.decodeOn(standby)
	e.expectStartError("decoding on a standby needs PostgreSQL 16 or later")
	if k := e.relkind("app.daily"); k != "m" {
		t.Errorf("a refused start left app.daily with relkind %q, want a materialized view", k)
	}
}

// expectLoggedMaintenance checks app.daily's refresh log row: its last
// maintenance's mode and reason, and (unless groups < 0) how many groups it
// recomputed.
func (e *env) expectLoggedMaintenance(mode, reason string, groups int64) {
	e.t.Helper()
	var gotMode, gotReason string
	var gotGroups *int64
	if err := e.pool.QueryRow(context.Background(), `SELECT maintenance, coalesce(full_reason, ''), groups_recomputed
		FROM public.mv_refresh_log WHERE mv_name = 'app.daily'`).Scan(&gotMode, &gotReason, &gotGroups); err != nil {
		e.t.Fatal(err)
	}
	if gotMode != mode || gotReason != reason || groups >= 0 && deref(gotGroups) != groups {
		e.t.Errorf("the refresh log says maintenance %q (%q), groups %v; want %q (%q), %d groups", gotMode, gotReason, deref(gotGroups), mode, reason, groups)
	}
}
