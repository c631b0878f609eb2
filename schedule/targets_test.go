package schedule

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

func TestEffectiveTargets_DependentsImposeOnBases(t *testing.T) {
	// app.a <- app.b <- app.c, and app.a <- app.d
	a := &catalog.View{Name: "app.a"}
	b := &catalog.View{Name: "app.b", Bases: []string{"app.a"}}
	c := &catalog.View{Name: "app.c", Bases: []string{"app.b"}}
	d := &catalog.View{Name: "app.d", Bases: []string{"app.a"}}
	cat := catalog.New(a, b, c, d)
	own := map[string]time.Duration{"app.c": 60 * time.Second, "app.d": 30 * time.Second}
	est := map[string]time.Duration{"app.b": 5 * time.Second, "app.c": 10 * time.Second, "app.d": 25 * time.Second}
	got := effectiveTargets(cat, func(v string) time.Duration { return own[v] }, func(v string) time.Duration { return est[v] })
	want := map[string]Target{
		"app.c": {60 * time.Second, "app.c"},
		"app.b": {50 * time.Second, "app.c"}, // c's 60 s less c's 10 s
		"app.d": {30 * time.Second, "app.d"},
		"app.a": {5 * time.Second, "app.d"}, // d's 30 s less 25 s is tighter than b's 50 s less 5 s
	}
	for v, w := range want {
		if got[v] != w {
			t.Errorf("%s: %+v, want %+v", v, got[v], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	own["app.a"] = 2 * time.Second // its own is tighter still
	if got := effectiveTargets(cat, func(v string) time.Duration { return own[v] }, func(v string) time.Duration { return est[v] }); got["app.a"] != (Target{2 * time.Second, "app.a"}) {
		t.Errorf("app.a with its own 2s: %+v", got["app.a"])
	}
}

func TestDurations_EstimateIsTheLongestRecent(t *testing.T) {
	d := durations{}
	if d.estimate("v", kindFull) != 0 {
		t.Fatal("an estimate from nothing")
	}
	for _, ms := range []int{900, 100, 200, 300, 400, 500} {
		d.observe("v", kindFull, time.Duration(ms)*time.Millisecond)
	}
	// 900 ms was six refreshes ago: out of the window.
	if got := d.estimate("v", kindFull); got != 500*time.Millisecond {
		t.Errorf("estimate %s, want 500ms", got)
	}
}

// A maintained view's full recomputes do not make its incremental
// maintenances look slow, nor the other way round; a kind not observed
// yet takes the other's estimate.
func TestDurations_EstimatePerKind(t *testing.T) {
	d := durations{}
	d.observe("v", kindFull, 30*time.Second)
	if got := d.estimate("v", kindIncremental); got != 30*time.Second {
		t.Errorf("incremental estimate before any incremental maintenance %s, want the full one, 30s", got)
	}
	for range recentDurations {
		d.observe("v", kindIncremental, 10*time.Millisecond)
	}
	if got := d.estimate("v", kindIncremental); got != 10*time.Millisecond {
		t.Errorf("incremental estimate %s, want 10ms", got)
	}
	if got := d.estimate("v", kindFull); got != 30*time.Second {
		t.Errorf("full estimate %s, want 30s", got)
	}
}

// With max_staleness 10s on both views, app.dep's refresh estimated at 2s
// and app.base's at 1s: app.base must finish within 8s, so it starts 6.6s
// after its change (8s less 1s less the 5% margin), not at its debounce,
// and the cascade follows at once.
func TestScheduler_TargetPlansTheLatestStart(t *testing.T) {
	s := newTestScheduler(t, func(o *Options) {
		o.Config.MaxStaleness = 10 * time.Second
		o.Durations = map[string]time.Duration{"app.base": time.Second, "app.dep": 2 * time.Second}
	})
	if tg := s.planner.targets["app.base"]; tg != (Target{MaxStaleness: 8 * time.Second, From: "app.dep"}) {
		t.Fatalf("app.base's target %+v, want 8s from app.dep", tg)
	}
	start := s.now
	s.commitForTest(7, 0x200, 0x210)
	s.now = start.Add(6500 * time.Millisecond)
	s.expectIdle(t)
	s.now = start.Add(6600 * time.Millisecond)
	req := s.nextForTest(t)
	if req.View.Name != "app.base" {
		t.Fatalf("refresh of %s, want app.base", req.View.Name)
	}
	s.succeedForTest(req)
	if req := s.nextForTest(t); req.View.Name != "app.dep" {
		t.Fatalf("refresh of %s, want the cascade to app.dep", req.View.Name)
	}
}

// A refresh finishing past its target is counted and logged with the reason.
func TestScheduler_MissedTargetIsCountedWithItsReason(t *testing.T) {
	var logs bytes.Buffer
	s := newTestScheduler(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Config.MaxStaleness = 10 * time.Second
		o.Durations = map[string]time.Duration{"app.base": time.Second, "app.dep": time.Second}
	})
	committed := s.now
	s.commitForTest(7, 0x200, 0x210)
	s.now = committed.Add(8 * time.Second)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Recorded: true,
		StartedAt: s.now, FinishedAt: s.now.Add(5 * time.Second)}}) // planned 1s
	if n := missed(t, s, "app.base"); n != 1 {
		t.Fatalf("missed_total %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "refresh slower than planned (5s, planned 1s)") {
		t.Errorf("log lacks the reason:\n%s", logs.String())
	}
	// The dependent within its target is not counted.
	req = s.nextForTest(t)
	s.finish(result{view: "app.dep", outcome: refresher.Outcome{LSN: req.LSN, Recorded: true,
		StartedAt: s.now, FinishedAt: committed.Add(9 * time.Second)}})
	if n := missed(t, s, "app.dep"); n != 0 {
		t.Errorf("app.dep missed_total %v, want 0", n)
	}
}

// A refresh held back by min_interval past its planned start misses its
// target because of min_interval, and the log says so, not that the
// refresh (faster than planned) was slow.
func TestScheduler_MissedTargetBlamesMinInterval(t *testing.T) {
	var logs bytes.Buffer
	s := newTestScheduler(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Config.MaxStaleness = 10 * time.Second
		o.Config.MinInterval = 30 * time.Second
		o.Durations = map[string]time.Duration{"app.base": time.Second, "app.dep": time.Second}
	})
	// app.base must finish within 9s (app.dep's 10s less its 1s): it is
	// due 7.55s after a change (9s less 1s less the 5% margin).
	t0 := s.now
	s.commitForTest(7, 0x200, 0x210)
	s.now = t0.Add(7600 * time.Millisecond)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Recorded: true,
		StartedAt: s.now, FinishedAt: s.now.Add(100 * time.Millisecond)}})
	if req = s.nextForTest(t); req.View.Name != "app.dep" {
		t.Fatalf("refresh of %s, want the cascade to app.dep", req.View.Name)
	}
	s.succeedForTest(req)

	// The next change is due at 17.55s, but min_interval allows a start
	// at 37.6s only.
	s.now = t0.Add(10 * time.Second)
	s.commitForTest(8, 0x300, 0x310)
	s.now = t0.Add(37500 * time.Millisecond)
	s.expectIdle(t)
	s.now = t0.Add(37600 * time.Millisecond)
	req = s.nextForTest(t)
	if req.View.Name != "app.base" {
		t.Fatalf("refresh of %s, want app.base", req.View.Name)
	}
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Recorded: true,
		StartedAt: s.now, FinishedAt: s.now.Add(100 * time.Millisecond)}})
	if n := missed(t, s, "app.base"); n != 1 {
		t.Fatalf("missed_total %v, want 1", n)
	}
	if !strings.Contains(logs.String(), `reason="min_interval (30s) held its start back 20.05s after it was due"`) {
		t.Errorf("log does not blame min_interval:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "slower than planned") {
		t.Errorf("log blames the refresh's speed:\n%s", logs.String())
	}
}

func missed(t *testing.T, s *Scheduler, view string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.TargetMissed.WithLabelValues(view).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestLagWindow_ForgetsOldLags(t *testing.T) {
	var l lagWindow
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.observe(400*time.Millisecond, t0)
	l.observe(10*time.Millisecond, t0.Add(time.Second))
	if got := l.longest(t0.Add(6 * time.Second)); got != 400*time.Millisecond {
		t.Errorf("one window later: %s, want the 400ms still", got)
	}
	l.observe(20*time.Millisecond, t0.Add(7*time.Second))
	if got := l.longest(t0.Add(11 * time.Second)); got != 20*time.Millisecond {
		t.Errorf("two windows later: %s, want 20ms", got)
	}
	if got := l.longest(t0.Add(30 * time.Second)); got != 0 {
		t.Errorf("after a long quiet: %s, want 0", got)
	}
}

// A target the refresh takes (nearly) all of leaves the plan no time: the
// view starts on its first change, even while the stream catches up on a
// backlog (which otherwise holds changes back until it is done), and a
// warning says the target cannot be met.
func TestScheduler_TargetWithNoTimeLeftStartsAtOnce(t *testing.T) {
	var logs bytes.Buffer
	s := newTestScheduler(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Config.MaxStaleness = 10 * time.Second
		o.Durations = map[string]time.Duration{"app.base": 9600 * time.Millisecond, "app.dep": 100 * time.Millisecond}
	})
	if n := strings.Count(logs.String(), "max_staleness cannot be met"); n != 1 || !strings.Contains(logs.String(), "view=app.base") {
		t.Fatalf("want one warning, for app.base:\n%s", logs.String())
	}
	backlog := s.now.Add(-time.Minute)
	s.receive(streamItem{tx: &replication.Transaction{Xid: 7, CommitLSN: 0x200, EndLSN: 0x210, CommitTime: backlog,
		Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}})
	if !s.catchUp.behind {
		t.Fatal("a minute-old commit did not make the stream catch up")
	}
	s.now = s.now.Add(time.Millisecond)
	if req := s.nextForTest(t); req.View.Name != "app.base" {
		t.Fatalf("refresh of %s, want app.base", req.View.Name)
	}
	s.replan() // the same plan: no second warning
	if n := strings.Count(logs.String(), "max_staleness cannot be met"); n != 1 {
		t.Fatalf("%d warnings after planning again, want 1:\n%s", n, logs.String())
	}
}
