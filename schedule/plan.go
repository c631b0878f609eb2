package schedule

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/debounce"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// planner plans the views' effective staleness targets, and the debounce
// rules that meet them, from the refreshes' recent durations and how late
// commits arrive. Only the scheduler's goroutine uses it.
type planner struct {
	cfg       config.Config
	logger    *slog.Logger
	durations durations
	// targets are the views' effective staleness targets.
	targets map[string]Target
	// unmeetable: the views whose plan leaves no time, warned about.
	unmeetable map[string]bool
	// lag is how long commits took to arrive lately; planLag is what the
	// plans assume.
	lag     lagWindow
	planLag time.Duration
}

func newPlanner(cfg config.Config, logger *slog.Logger) *planner {
	return &planner{cfg: cfg, logger: logger, durations: durations{}}
}

// hasTargets reports whether any view has a staleness target.
func (p *planner) hasTargets() bool { return len(p.targets) > 0 }

// plan recomputes the targets of cat's views from the configuration and
// the duration estimates.
func (p *planner) plan(cat *catalog.Catalog) {
	p.targets = effectiveTargets(cat,
		func(v string) time.Duration { return p.cfg.ViewSettings(v).MaxStaleness },
		p.durations.estimate)
	p.warnUnmeetable(cat)
}

// warnUnmeetable warns when a view's plan comes to leave it no time to
// wait: its refresh, the stream's delay and the margin take all of its
// target. It then refreshes on every change, without a quiet period, and
// may still miss the target.
func (p *planner) warnUnmeetable(cat *catalog.Catalog) {
	unmeetable := map[string]bool{}
	for _, name := range cat.Names() {
		t, ok := p.targets[name]
		est := p.durations.estimate(name)
		if !ok || startWithin(t.MaxStaleness, est+p.planLag) > 0 {
			continue
		}
		unmeetable[name] = true
		if !p.unmeetable[name] {
			p.logger.Warn("max_staleness cannot be met: the refresh takes (nearly) all of the target, so the view refreshes on every change, without waiting",
				"view", name, "max_staleness", t.MaxStaleness.String(), "target_of", t.From,
				"refresh_estimate", est.Round(time.Millisecond).String(), "arrival_lag", p.planLag.Round(time.Millisecond).String())
		}
	}
	p.unmeetable = unmeetable
}

// asSoonAsPossible is the max wait of a view whose plan leaves no time: to
// the debouncer a max wait of 0 means no bound, and the view would wait out
// a whole backlog.
const asSoonAsPossible = time.Nanosecond

// settings are the debouncer's rules for a view. A view with a staleness
// target starts as late as lets it finish within the target, so that as
// many changes as possible share one refresh: debounce and max_wait give
// way to the plan.
func (p *planner) settings(name string) debounce.Settings {
	vs := p.cfg.ViewSettings(name)
	st := debounce.Settings{Quiet: vs.Debounce, MaxWait: vs.MaxWait, MinInterval: vs.MinInterval}
	if t, ok := p.targets[name]; ok {
		within := startWithin(t.MaxStaleness, p.durations.estimate(name)+p.planLag)
		st.Quiet, st.MaxWait = within, max(within, asSoonAsPossible)
	}
	return st
}

// observeDuration notes a successful refresh's duration, and reports
// whether it changed an estimate a plan rests on.
func (p *planner) observeDuration(name string, took time.Duration) (replan bool) {
	before := p.durations.estimate(name)
	p.durations.observe(name, took)
	return p.hasTargets() && p.durations.estimate(name) != before
}

// lagChanged reports whether commits take noticeably longer or shorter to
// arrive than the plans assume, and if so assumes the new lag.
func (p *planner) lagChanged(now time.Time) bool {
	if !p.hasTargets() {
		return false
	}
	lag := p.lag.longest(now)
	if d := lag - p.planLag; d > -planLagStep && d < planLagStep {
		return false
	}
	p.planLag = lag
	return true
}

// planLagStep is the change in arrival lag that is worth planning again for.
const planLagStep = 20 * time.Millisecond

// seedDurations starts the estimates from the refresh log's last durations.
func (s *Scheduler) seedDurations(last map[string]time.Duration) {
	for name, d := range last {
		s.planner.durations.observe(name, d)
	}
	s.replan()
}

// replan plans the targets again and hands the views' new rules to the
// debouncer.
func (s *Scheduler) replan() {
	s.planner.plan(s.catalog)
	for _, n := range s.catalog.Names() {
		s.debouncer.Set(n, s.planner.settings(n), s.catalog.TransitiveBases(n))
	}
}

// checkTarget counts and logs a successful refresh that finished later
// after its oldest change's commit than the view's target.
func (s *Scheduler) checkTarget(name string, w *work, out refresher.Outcome) {
	t, ok := s.planner.targets[name]
	if !ok || w.firstChangeAt.IsZero() {
		return
	}
	staleness := out.FinishedAt.Sub(w.firstChangeAt)
	if staleness <= t.MaxStaleness {
		return
	}
	s.metrics.TargetMissed.WithLabelValues(name).Inc()
	s.logger.Warn("refresh missed its staleness target", "view", name,
		"staleness", staleness.Round(time.Millisecond).String(), "max_staleness", t.MaxStaleness.String(), "target_of", t.From,
		"reason", s.missReason(name, w, out))
}

// missReason says why a refresh finished late, most telling cause first.
func (s *Scheduler) missReason(name string, w *work, out refresher.Outcome) string {
	took, planned := out.FinishedAt.Sub(out.StartedAt), w.late.planned
	switch {
	case w.attempt > 1:
		return fmt.Sprintf("its refresh failed first (attempt %d)", w.attempt)
	case w.late.baseAttempts > 1:
		return "a base view's refresh failed first"
	case w.late.heldByMinInterval > 0 && w.late.heldByMinInterval >= took-planned:
		return fmt.Sprintf("min_interval (%s) held its start back %s after it was due", s.cfg.ViewSettings(name).MinInterval, w.late.heldByMinInterval.Round(time.Millisecond))
	case w.late.waitedForWorker:
		return "workers busy: it was due while every worker refreshed another view"
	case w.late.waitedForRelated:
		return "it was due while a base or dependent of it refreshed"
	case took > planned:
		return fmt.Sprintf("refresh slower than planned (%s, planned %s)", took.Round(time.Millisecond), planned.Round(time.Millisecond))
	}
	return "the change reached the daemon late (the stream was behind), or the target is shorter than the refresh and its cascade take"
}

// RefreshMode is the view's concurrently setting as the refresher takes it.
func RefreshMode(cfg config.Config, view string) refresher.Mode {
	switch cfg.ViewSettings(view).Concurrently {
	case config.ConcurrentlyAlways:
		return refresher.ModeConcurrently
	case config.ConcurrentlyNever:
		return refresher.ModePlain
	}
	return refresher.ModeAuto
}
