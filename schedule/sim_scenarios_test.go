package schedule

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
)

func simSource() *catalog.Table {
	return &catalog.Table{OID: srcOID, Schema: "app", Relname: "src", Name: "app.src", Kind: catalog.KindTable, Persistence: 'p', ReplicaIdentity: true}
}

// The exact counterpart of the end-to-end TestDaemon_StalenessTargetCoalescesAndIsMet:
// eight inserts 300 ms apart. app.planned (max_staleness 5s, a 300 ms
// refresh) starts 4.45 s after the first (5 s less 300 ms less the 250 ms
// margin), once, covering all eight, within its target; app.eager (debounce
// 100 ms) refreshes after each pause.
func TestSim_StalenessTargetCoalescesAndIsMet(t *testing.T) {
	src := simSource()
	planned := &catalog.View{OID: 1, Schema: "app", Relname: "planned", Name: "app.planned", Sources: []*catalog.Table{src}}
	eager := &catalog.View{OID: 2, Schema: "app", Relname: "eager", Name: "app.eager", Sources: []*catalog.Table{src}}
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait = 100*time.Millisecond, time.Second
	target := 5 * time.Second
	cfg.Views = map[string]config.View{"app.planned": {MaxStaleness: &target}}
	m := newSim(t, cfg, map[string]time.Duration{"app.planned": 300 * time.Millisecond, "app.eager": 20 * time.Millisecond}, []*catalog.View{planned, eager})

	for range 8 {
		m.commit()
		m.advance(300 * time.Millisecond)
	}
	m.advance(10 * time.Second)

	got := m.refreshesOf("app.planned")
	if len(got) != 1 || got[0].Changes != 8 {
		t.Fatalf("app.planned refreshed%s; want once, with all 8 changes", summarize(got))
	}
	if stale := got[0].StalenessMS; stale != 4750 {
		t.Errorf("app.planned finished %.0f ms after its oldest change; want 4750 (started at 4450, took 300)", stale)
	}
	if got := m.refreshesOf("app.eager"); len(got) != 8 {
		t.Errorf("app.eager refreshed%s; want 8 times, once after each pause", summarize(got))
	}
	if n := missed(t, m.s, "app.planned"); n != 0 {
		t.Errorf("missed_total %v, want 0", n)
	}
}

// The exact counterpart of the end-to-end
// TestDaemon_SustainedWritesDoNotStarveADependent: a write every 50 ms for
// 10 s, so the base (debounce 200 ms, never quiet; max_wait 2 s; a 300 ms
// refresh) refreshes every 2 s and is pending again, with older changes,
// whenever it finishes. Its dependent, pending from the base's first
// cascade on (2.3 s), waits for the base's next refresh only until its own
// max_wait: it starts at 4.3 s and 8.3 s, each time covering two of the
// base's refreshes, so a change is in it at most 2 x max_wait and both
// refreshes after its commit; and the slot moves on with each.
func TestSim_SustainedWritesDoNotStarveADependent(t *testing.T) {
	src := simSource()
	base := &catalog.View{OID: 1, Schema: "app", Relname: "base", Name: "app.base", Sources: []*catalog.Table{src}}
	dep := &catalog.View{OID: 2, Schema: "app", Relname: "dep", Name: "app.dep", Bases: []string{"app.base"}}
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait = 200*time.Millisecond, 2*time.Second
	took := map[string]time.Duration{"app.base": 300 * time.Millisecond, "app.dep": 100 * time.Millisecond}
	m := newSim(t, cfg, took, []*catalog.View{base, dep})

	start := m.s.now
	confirmable := []pglogrepl.LSN{m.s.watermark.Confirmable()}
	for i := range 200 {
		m.commit()
		m.advance(50 * time.Millisecond)
		if i%100 == 99 {
			confirmable = append(confirmable, m.s.watermark.Confirmable())
		}
	}
	var starts []time.Duration
	for _, e := range m.refreshesOf("app.dep") {
		starts = append(starts, e.StartedAt.Sub(start.UTC()))
		if e.Changes != 80 || e.StalenessMS != 4400 {
			t.Errorf("app.dep's refresh covered %d changes, finished %.0f ms after the oldest; want 80 and 4400 (2 s + 300 ms + 2 s + 100 ms)", e.Changes, e.StalenessMS)
		}
	}
	if want := []time.Duration{4300 * time.Millisecond, 8300 * time.Millisecond}; !slices.Equal(starts, want) {
		t.Errorf("app.dep started at %v; want %v", starts, want)
	}
	// The slot moves with each of app.dep's refreshes.
	for i := 1; i < len(confirmable); i++ {
		if confirmable[i] <= confirmable[i-1] {
			t.Errorf("the slot's confirmable position did not move in 5 s of writes: %v (at 0 s, 5 s, 10 s)", confirmable)
		}
	}
}
