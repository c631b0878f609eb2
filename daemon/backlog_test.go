package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A backlog (written while the daemon was stopped) is refreshed once when
// the stream has caught up, not after each of its transactions: even with
// no quiet period, a refresh in the middle of a backlog is stale at once
// and takes CPU from the walsender sending the rest.
func TestDaemon_BacklogRefreshesOnceCaughtUp(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.Debounce = 0
	e.start()
	e.settle()
	e.stop()

	for i := range 200 {
		e.exec("INSERT INTO app.events VALUES ($1, '2026-05-01', 1, $2)", 1000+i, i)
	}
	var last time.Time
	if err := e.pool.QueryRow(context.Background(), "SELECT now()").Scan(&last); err != nil {
		t.Fatal(err)
	}
	// The daemon counts a transaction committed over a second before it
	// arrives as a backlog.
	e.waitFor("the backlog to be over a second old", 10*time.Second, func() (bool, error) {
		return time.Since(last) > 1100*time.Millisecond, nil
	})

	e.start()
	evs := e.settle()
	e.expectEvents(evs, "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	for _, ev := range evs {
		if ev.View == "app.mv_totals" && ev.Changes != 200 {
			t.Errorf("mv_totals refreshed for %d changes, want the whole backlog of 200", ev.Changes)
		}
	}
	e.assertFresh(allViews...)
	if !strings.Contains(e.logs.String(), "caught up on a backlog") {
		t.Errorf("the log does not say it caught up:\n%s", e.logs.String())
	}
}
