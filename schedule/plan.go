package schedule

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/debounce"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// planner plans the views' effective staleness targets, and the debounce
// rules that meet them, from the refreshes' recent durations and how late
// commits arrive. Only the scheduler's goroutine uses it.
type planner struct {
	cfg       config.Config
	logger    *slog.Logger
	durations durations
	// follows has the views maintained incrementally whose changes can
	// name the rows to recompute: their refreshes are incremental unless
	// their work says otherwise. planned has, for those with a target, the
	// kind of refresh their debouncer rules were planned for.
	follows map[string]bool
	planned map[string]refreshKind
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
// the duration estimates. A dependent's refresh after its base is a
// cascade. A maintained dependent's cascade may follow the rows its
// maintained base's maintenance named, but recomputes it whole whenever
// the base's was (a TRUNCATE, a startup) or it cannot follow them: the
// target it imposes on its bases leaves room for its full recompute, so
// that such a cascade still finishes within it (at worst its bases start
// a little earlier than an incremental cascade needs).
func (p *planner) plan(cat *catalog.Catalog) {
	p.targets = effectiveTargets(cat,
		func(v string) time.Duration { return p.cfg.ViewSettings(v).MaxStaleness },
		func(v string) time.Duration { return p.durations.estimate(v, kindFull) })
	p.planned = map[string]refreshKind{}
	p.warnUnmeetable(cat)
}

// usualKind is the kind of refresh the view's changes usually get.
func (p *planner) usualKind(name string) refreshKind {
	if p.follows[name] {
		return kindIncremental
	}
	return kindFull
}

// warnUnmeetable warns when a view's plan comes to leave it no time to
// wait: its refresh, the stream's delay and the margin take all of its
// target. It then refreshes on every change, without a quiet period, and
// may still miss the target. A maintained view is judged by its
// incremental maintenances, once one has run: an occasional full
// recompute (a startup, a TRUNCATE) starting at once is no reason to warn.
func (p *planner) warnUnmeetable(cat *catalog.Catalog) {
	unmeetable := map[string]bool{}
	for _, name := range cat.Names() {
		t, ok := p.targets[name]
		kind := p.usualKind(name)
		est := p.durations.estimate(name, kind)
		if !ok || startWithin(t.MaxStaleness, est+p.planLag) > 0 || kind == kindIncremental && !p.durations.observed(name, kind) {
			continue
		}
		unmeetable[name] = true
		if !p.unmeetable[name] {
			attrs := []any{"view", name, "max_staleness", t.MaxStaleness.String(), "target_of", t.From,
				"refresh_estimate", est.Round(time.Millisecond).String(), "arrival_lag", p.planLag.Round(time.Millisecond).String()}
			if kind == kindIncremental {
				attrs = append(attrs, "maintenance", maintain.ModeIncremental) // the estimate is of its incremental maintenances
			}
			p.logger.Warn("max_staleness cannot be met: the refresh takes (nearly) all of the target, so the view refreshes on every change, without waiting", attrs...)
		}
	}
	p.unmeetable = unmeetable
}

// asSoonAsPossible is the max wait of a view whose plan leaves no time: to
// the debouncer a max wait of 0 means no bound, and the view would wait out
// a whole backlog.
const asSoonAsPossible = time.Nanosecond

// settings are the debouncer's rules for a view whose pending work is a
// refresh of kind. A view with a staleness target starts as late as lets
// it finish within the target, so that as many changes as possible share
// one refresh: debounce and max_wait give way to the plan.
func (p *planner) settings(name string, kind refreshKind) debounce.Settings {
	vs := p.cfg.ViewSettings(name)
	st := debounce.Settings{Quiet: vs.Debounce, MaxWait: vs.MaxWait, MinInterval: vs.MinInterval}
	if t, ok := p.targets[name]; ok {
		within := startWithin(t.MaxStaleness, p.durations.estimate(name, kind)+p.planLag)
		st.Quiet, st.MaxWait = within, max(within, asSoonAsPossible)
	}
	return st
}

// observeDuration notes a successful refresh's duration, and reports
// whether it changed an estimate a plan rests on (or the first of its
// kind, which the warning waits for).
func (p *planner) observeDuration(name string, kind refreshKind, took time.Duration) (replan bool) {
	estimates := func() [2]time.Duration {
		return [2]time.Duration{p.durations.estimate(name, kindFull), p.durations.estimate(name, kindIncremental)}
	}
	before, first := estimates(), !p.durations.observed(name, kind)
	p.durations.observe(name, kind, took)
	return p.hasTargets() && (first || estimates() != before)
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

// seedDurations starts the estimates from the refresh log's last
// durations: full ones (plain refreshes and full recomputes), and
// incremental maintenances.
func (s *Scheduler) seedDurations(full, incremental map[string]time.Duration) {
	for name, d := range full {
		s.planner.durations.observe(name, kindFull, d)
	}
	for name, d := range incremental {
		s.planner.durations.observe(name, kindIncremental, d)
	}
	s.replan()
}

// replan plans the targets again and hands the views' new rules to the
// debouncer.
func (s *Scheduler) replan() {
	s.planner.plan(s.catalog)
	for _, n := range s.catalog.Names() {
		s.setRules(n)
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
	case took > planned && w.follow.Full() == "" && out.Maintained != nil && out.Maintained.Full != "":
		return fmt.Sprintf("it was recomputed whole (%s), planned as an incremental maintenance: %s, planned %s",
			out.Maintained.Full, took.Round(time.Millisecond), planned.Round(time.Millisecond))
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
