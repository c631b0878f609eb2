// Package schedule decides when each managed view refreshes.
package schedule

import (
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

// PlanTargets computes every managed view's target; views without one
// are absent.
func PlanTargets(cat *catalog.Catalog, own func(view string) time.Duration, est func(view string) time.Duration) map[string]Target {
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
// refresh log's last durations: what status and explain show.
func TargetsFromLog(cfg config.Config, cat *catalog.Catalog, rows map[string]refresher.LogRow) map[string]Target {
	return PlanTargets(cat, func(v string) time.Duration { return cfg.ViewSettings(v).MaxStaleness },
		func(v string) time.Duration { return rows[v].Duration() })
}
