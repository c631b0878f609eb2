// Package schedule decides when each managed view refreshes.
package schedule

import (
	"slices"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// Target is a view's effective staleness target: the tightest of its own
// max_staleness and those its dependents impose (a dependent's target less
// its refresh's estimate: the base must finish by then for the cascade to
// finish in time). From names the view whose max_staleness it comes from.
type Target struct {
	MaxStaleness time.Duration
	From         string
}

// effectiveTargets computes every managed view's target; views without one
// are absent.
func effectiveTargets(cat *catalog.Catalog, own func(view string) time.Duration, est func(view string) time.Duration) map[string]Target {
	out := map[string]Target{}
	done := map[string]bool{}
	var visit func(string) (Target, bool)
	visit = func(v string) (Target, bool) {
		if done[v] {
			t, ok := out[v]
			return t, ok
		}
		done[v] = true // a view graph has no cycles; this only memoises
		best, ok := Target{}, false
		if d := own(v); d > 0 {
			best, ok = Target{MaxStaleness: d, From: v}, true
		}
		for _, dep := range cat.Dependents(v) {
			t, has := visit(dep)
			if !has {
				continue
			}
			imposed := max(t.MaxStaleness-est(dep), 0)
			if !ok || imposed < best.MaxStaleness {
				best, ok = Target{MaxStaleness: imposed, From: t.From}, true
			}
		}
		if ok {
			out[v] = best
		}
		return best, ok
	}
	for _, name := range cat.Names() {
		visit(name)
	}
	return out
}

// TargetsFromLog are the targets a daemon starting now would plan, from the
// refresh log's last durations: what status and explain show. A
// maintained view's last duration is of whichever mode it last ran in.
func TargetsFromLog(cfg config.Config, cat *catalog.Catalog, rows map[string]refresher.LogRow) map[string]Target {
	return effectiveTargets(cat, func(v string) time.Duration { return cfg.ViewSettings(v).MaxStaleness },
		func(v string) time.Duration { return rows[v].Duration() })
}

// refreshKind is how a refresh brings a view up to date, for its duration
// estimate: a view maintained incrementally recomputes the groups its
// changed rows name, in milliseconds, or the whole view, like any plain
// refresh, in however long its query takes. Each has its own estimate.
type refreshKind uint8

const (
	kindFull refreshKind = iota
	kindIncremental
)

// outcomeKind is the kind of refresh out reports.
func outcomeKind(out refresher.Outcome) refreshKind {
	if out.Maintained != nil && out.Maintained.Full == "" {
		return kindIncremental
	}
	return kindFull
}

// recentDurations is how many of a view's last refresh durations of one
// kind its estimate looks at: the longest of them, so that one fast
// refresh does not make the plan optimistic.
const recentDurations = 5

// durations remembers each view's recent refresh durations, per kind.
type durations map[durationsOf][]time.Duration

type durationsOf struct {
	view string
	kind refreshKind
}

func (d durations) observe(view string, kind refreshKind, took time.Duration) {
	k := durationsOf{view, kind}
	r := append(d[k], took)
	if len(r) > recentDurations {
		r = r[len(r)-recentDurations:]
	}
	d[k] = r
}

// estimate is how long the view's next refresh of kind is planned to
// take; 0 with nothing to go on yet. A kind not observed yet takes the
// other's: an incremental maintenance is planned as conservatively as a
// full recompute until one has run (a full recompute from incremental
// ones, optimistically, until one has run: nothing better is known).
func (d durations) estimate(view string, kind refreshKind) time.Duration {
	r := d[durationsOf{view, kind}]
	if len(r) == 0 {
		r = d[durationsOf{view, 1 - kind}]
	}
	if len(r) > 0 {
		return slices.Max(r)
	}
	return 0
}

// observed reports whether a refresh of the view of kind has run.
func (d durations) observed(view string, kind refreshKind) bool {
	return len(d[durationsOf{view, kind}]) > 0
}

func (d durations) forget(view string) {
	delete(d, durationsOf{view, kindFull})
	delete(d, durationsOf{view, kindIncremental})
}

// lagWindow is the longest time commits took to reach the scheduler over
// the last one or two windows: a plan counts from a change's arrival, a
// target from its commit. An asynchronous commit reaches the stream only
// once the WAL writer has flushed it, hundreds of milliseconds later.
type lagWindow struct {
	cur, prev time.Duration
	since     time.Time
}

const lagWindowLength = 5 * time.Second

func (l *lagWindow) observe(lag time.Duration, now time.Time) {
	l.roll(now)
	l.cur = max(l.cur, lag)
}

func (l *lagWindow) longest(now time.Time) time.Duration {
	l.roll(now)
	return max(l.cur, l.prev)
}

func (l *lagWindow) roll(now time.Time) {
	if now.Sub(l.since) < lagWindowLength {
		return
	}
	l.prev, l.cur = l.cur, 0
	if now.Sub(l.since) >= 2*lagWindowLength {
		l.prev = 0
	}
	l.since = now
}

// planMargin is how much earlier than its estimate allows a view with a
// target starts: the stream's delay, a worker freeing a moment late.
func planMargin(t time.Duration) time.Duration {
	return max(100*time.Millisecond, t/20)
}

// startWithin is how long after its first pending change a view with
// target t, whose refresh is estimated to take est, may start.
func startWithin(t, est time.Duration) time.Duration {
	return max(t-est-planMargin(t), 0)
}
