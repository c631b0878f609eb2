package schedule

import (
	"slices"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// newPeriodicSim manages app.today (refresh_every 10s, a refresh taking
// took) and app.plain (no refresh_every), both reading app.src, with no
// quiet period.
func newPeriodicSim(t *testing.T, took time.Duration) *sim {
	t.Helper()
	src := simSource()
	today := &catalog.View{OID: 1, Schema: "app", Relname: "today", Name: "app.today", Sources: []*catalog.Table{src}}
	plain := &catalog.View{OID: 2, Schema: "app", Relname: "plain", Name: "app.plain", Sources: []*catalog.Table{src}}
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait = 0, 0
	every := 10 * time.Second
	cfg.Views = map[string]config.View{"app.today": {RefreshEvery: &every}}
	return newSim(t, cfg, map[string]time.Duration{"app.today": took, "app.plain": 20 * time.Millisecond}, []*catalog.View{today, plain})
}

// startsOf returns when each of the events started, from start, and their
// reasons.
func startsOf(evs []events.Refresh, start time.Time) ([]time.Duration, []events.Reason) {
	var at []time.Duration
	var reasons []events.Reason
	for _, e := range evs {
		at = append(at, e.StartedAt.Sub(start.UTC()))
		reasons = append(reasons, e.Reason)
	}
	return at, reasons
}

// Without a single change, a view with refresh_every 10s refreshes at 10 s,
// 20 s, 30 s; a view without it does not. The periodic refresh holds no
// slot position and owes nothing: the view stays fresh through everything
// received while it runs, and its event says so.
func TestSim_RefreshEveryRefreshesWithoutChanges(t *testing.T) {
	m := newPeriodicSim(t, time.Second)
	start := m.s.now

	m.advance(10*time.Second + 500*time.Millisecond)
	w := m.s.running["app.today"]
	if w == nil {
		t.Fatal("app.today is not refreshing 10.5 s in, with refresh_every 10s")
	}
	if w.reason != events.ReasonPeriodic || w.debt.hold != 0 || m.s.watermark.Held() != 0 {
		t.Errorf("the periodic refresh has reason %q, hold %d, %d slot holds; want periodic and none", w.reason, w.debt.hold, m.s.watermark.Held())
	}
	if through, ok := m.s.freshThrough("app.today"); !ok || through != m.s.watermark.SeenLSN() {
		t.Errorf("while its periodic refresh runs, app.today is fresh through %s (ok %v); want everything received, %s", through, ok, m.s.watermark.SeenLSN())
	}
	if got := m.s.watermark.Confirmable(); got != m.s.watermark.SeenLSN() {
		t.Errorf("the slot may confirm %s while the periodic refresh runs; want everything received, %s", got, m.s.watermark.SeenLSN())
	}

	m.advance(25 * time.Second)
	evs := m.refreshesOf("app.today")
	at, reasons := startsOf(evs, start)
	if want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}; !slices.Equal(at, want) {
		t.Errorf("app.today refreshed at %v; want %v", at, want)
	}
	for i, e := range evs {
		if reasons[i] != events.ReasonPeriodic || e.Changes != 0 || e.FreshThrough != m.s.watermark.SeenLSN().String() {
			t.Errorf("periodic refresh %d: reason %q, %d changes, fresh through %q; want periodic, 0, %s", i, reasons[i], e.Changes, e.FreshThrough, m.s.watermark.SeenLSN())
		}
	}
	if evs := m.refreshesOf("app.plain"); len(evs) != 0 {
		t.Errorf("app.plain, without refresh_every, refreshed %d times without a change", len(evs))
	}
}

// A change-driven refresh starts a new period: after one at 7 s, the next
// periodic refresh is at 17 s, not 10 s.
func TestSim_RefreshEveryCountsFromTheLastRefresh(t *testing.T) {
	m := newPeriodicSim(t, 20*time.Millisecond)
	start := m.s.now

	m.advance(7 * time.Second)
	m.commit()
	m.advance(23 * time.Second)

	at, reasons := startsOf(m.refreshesOf("app.today"), start)
	if want := []time.Duration{7 * time.Second, 17 * time.Second, 27 * time.Second}; !slices.Equal(at, want) {
		t.Errorf("app.today refreshed at %v; want %v", at, want)
	}
	if want := []events.Reason{events.ReasonChange, events.ReasonPeriodic, events.ReasonPeriodic}; !slices.Equal(reasons, want) {
		t.Errorf("app.today's refreshes had reasons %v; want %v", reasons, want)
	}
	if evs := m.refreshesOf("app.plain"); len(evs) != 1 {
		t.Errorf("app.plain refreshed %d times; want once, for the change", len(evs))
	}
}
