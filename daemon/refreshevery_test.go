package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// A view whose rows depend on the time, with refresh_every 2s: rows leave
// it as they age out of its window, with no write to tell the daemon, and
// check does not ask for the refresh_every it has.
func TestDaemon_RefreshEveryRefreshesAViewThatChangesWithTheTime(t *testing.T) {
	const window = 4 * time.Second
	e := newEnv(t, `
		CREATE TABLE app.visits (id int PRIMARY KEY, at timestamptz NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_recent AS SELECT id FROM app.visits WHERE at > now() - interval '4 seconds';
		CREATE UNIQUE INDEX ON app.mv_recent (id);`)
	every := 2 * time.Second
	e.cfg.Views = map[string]config.View{"app.mv_recent": {RefreshEvery: &every}}
	e.start()
	e.settle()

	e.exec("INSERT INTO app.visits VALUES (1, now())")
	inserted := time.Now() // after the commit: the row's at is earlier
	e.waitEvent("the refresh for the insert", func(ev events.Refresh) bool {
		return ev.View == "app.mv_recent" && ev.Reason == events.ReasonChange && ev.Status == events.StatusOK
	})

	// No write from here on. The refresh's now() is taken after its start,
	// so a start past the window (and a margin for the clocks of the test,
	// the daemon and the server, one machine's) leaves the row out.
	aged := inserted.Add(window + 500*time.Millisecond)
	ev := e.waitEvent("a periodic refresh after the row aged out of the view", func(ev events.Refresh) bool {
		return ev.View == "app.mv_recent" && ev.Reason == events.ReasonPeriodic && ev.Status == events.StatusOK && ev.StartedAt.After(aged)
	})
	if ev.Changes != 0 || len(ev.Sources) != 0 || ev.FreshThrough == "" {
		t.Errorf("periodic refresh event: %d changes, sources %v, fresh_through %q; want none, none and a position", ev.Changes, ev.Sources, ev.FreshThrough)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM app.mv_recent").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("app.mv_recent has %d rows after a periodic refresh past the window; want 0", n)
	}
	e.mu.Lock()
	for _, ev := range e.events {
		if ev.View == "app.mv_recent" && ev.Reason != events.ReasonPeriodic && ev.Reason != events.ReasonChange {
			t.Errorf("app.mv_recent refreshed with reason %q; want only the change and periodic refreshes", ev.Reason)
		}
	}
	e.mu.Unlock()
	if logs := e.logs.String(); strings.Contains(logs, "time-based-filter") {
		t.Errorf("the daemon's check suggests refresh_every for a view that has it:\n%s", logs)
	}
}
