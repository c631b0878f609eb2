package daemon_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// A view with max_staleness waits as long as its target allows, so that a
// stream of writes shares one refresh, and still finishes within the target;
// a view reading the same table with a short debounce refreshes after each
// pause.
func TestDaemon_StalenessTargetCoalescesAndIsMet(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.orders (id serial PRIMARY KEY, amount int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_planned AS
			SELECT count(*)::int AS n, sum(amount)::int AS total FROM app.orders, LATERAL pg_sleep(0.3) s;
		CREATE UNIQUE INDEX ON app.mv_planned (n);
		CREATE MATERIALIZED VIEW app.mv_eager AS SELECT count(*)::int AS n FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_eager (n);`)
	e.cfg.Debounce, e.cfg.MaxWait = 100*time.Millisecond, time.Second
	target := 5 * time.Second
	e.cfg.Views = map[string]config.View{"app.mv_planned": {MaxStaleness: &target}}
	e.start()
	e.settle()

	first := time.Now()
	for range 8 {
		e.exec("INSERT INTO app.orders (amount) VALUES (1)")
		time.Sleep(300 * time.Millisecond) // pauses longer than app.mv_eager's debounce
	}
	e.waitEvent("app.mv_planned's refresh of every insert", func(ev events.Refresh) bool {
		return ev.View == "app.mv_planned" && ev.Changes > 0 && ev.FirstChangeAt.After(first.Add(-time.Second))
	})
	evs := e.settle()
	planned, eager := 0, 0
	for _, ev := range evs {
		switch ev.View {
		case "app.mv_planned":
			planned++
			if ev.StalenessMS > float64(target.Milliseconds()) {
				t.Errorf("app.mv_planned finished %.0f ms after its oldest change, target %s", ev.StalenessMS, target)
			}
		case "app.mv_eager":
			eager++
		}
	}
	// Coarse on two busy cores; the exact counts and times are
	// TestSim_StalenessTargetCoalescesAndIsMet's (package schedule), on the
	// scheduler's fake clock.
	if planned == 0 || planned > 2 || eager <= planned {
		t.Errorf("8 inserts over 2.4 s: app.mv_planned refreshed %d times (want 1 or 2), app.mv_eager %d (want more)", planned, eager)
	}
	e.assertFresh("app.mv_planned", "app.mv_eager")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := e.daemon.View(ctx, "app.mv_planned"); err != nil || st.MaxStalenessMS != 5000 || st.MaxStalenessFrom != "app.mv_planned" {
		t.Errorf("app.mv_planned's state %+v (%v), want max_staleness 5s of its own", st, err)
	}
	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		// Every managed view's series exists from the start, at 0.
		if strings.HasPrefix(line, "mvrefresher_staleness_target_missed_total{") && !strings.HasSuffix(line, "} 0") {
			t.Errorf("a target missed: %s", line)
		}
	}
}
