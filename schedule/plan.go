package schedule

import (
	"fmt"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/debounce"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// planTargets recomputes the views' effective staleness targets from the
// configuration and the duration estimates.
func (s *Scheduler) planTargets() {
	s.targets = PlanTargets(s.catalog,
		func(v string) time.Duration { return s.cfg.ViewSettings(v).MaxStaleness },
		s.durations.estimate)
	s.hasTargets = len(s.targets) > 0
	s.warnUnmeetable()
}

// warnUnmeetable warns when a view's plan comes to leave it no time to
// wait: its refresh, the stream's delay and the margin take all of its
// target. It then refreshes on every change, without a quiet period, and
// may still miss the target.
func (s *Scheduler) warnUnmeetable() {
	unmeetable := map[string]bool{}
	for _, name := range s.catalog.Names() {
		t, ok := s.targets[name]
		est := s.durations.estimate(name)
		if !ok || startWithin(t.MaxStaleness, est+s.planLag) > 0 {
			continue
		}
		unmeetable[name] = true
		if !s.unmeetable[name] {
			s.logger.Warn("max_staleness cannot be met: the refresh takes (nearly) all of the target, so the view refreshes on every change, without waiting",
				"view", name, "max_staleness", t.MaxStaleness.String(), "target_of", t.From,
				"refresh_estimate", est.Round(time.Millisecond).String(), "arrival_lag", s.planLag.Round(time.Millisecond).String())
		}
	}
	s.unmeetable = unmeetable
}

// asSoonAsPossible is the max wait of a view whose plan leaves no time: to
// the debouncer a max wait of 0 means no bound, and the view would wait out
// a whole backlog.
const asSoonAsPossible = time.Nanosecond

// debounceSettings are the debouncer's rules for a view. A view with a
// staleness target starts as late as lets it finish within the target, so
// that as many changes as possible share one refresh: debounce and
// max_wait give way to the plan.
func (s *Scheduler) debounceSettings(name string) debounce.Settings {
	vs := s.cfg.ViewSettings(name)
	st := debounce.Settings{Quiet: vs.Debounce, MaxWait: vs.MaxWait, MinInterval: vs.MinInterval}
	if t, ok := s.targets[name]; ok {
		within := startWithin(t.MaxStaleness, s.durations.estimate(name)+s.planLag)
		st.Quiet, st.MaxWait = within, max(within, asSoonAsPossible)
	}
	return st
}

// observeDuration notes a successful refresh's duration and, when that
// changes an estimate a plan rests on, plans again.
func (s *Scheduler) observeDuration(name string, took time.Duration) {
	before := s.durations.estimate(name)
	s.durations.observe(name, took)
	if !s.hasTargets || s.durations.estimate(name) == before {
		return
	}
	s.replan()
}

// replanForLag plans again when commits take noticeably longer or shorter
// to arrive than the plans assume.
func (s *Scheduler) replanForLag() {
	if !s.hasTargets {
		return
	}
	lag := s.lag.longest(s.now)
	if d := lag - s.planLag; d > -planLagStep && d < planLagStep {
		return
	}
	s.planLag = lag
	s.replan()
}

// planLagStep is the change in arrival lag that is worth planning again for.
const planLagStep = 20 * time.Millisecond

// seedDurations starts the estimates from the refresh log's last durations.
func (s *Scheduler) seedDurations(last map[string]time.Duration) {
	for name, d := range last {
		s.durations.observe(name, d)
	}
	s.replan()
}

// replan plans the targets again and hands the views' new rules to the
// debouncer.
func (s *Scheduler) replan() {
	s.planTargets()
	for _, n := range s.catalog.Names() {
		s.debouncer.Set(n, s.debounceSettings(n), s.catalog.TransitiveBases(n))
	}
}

// checkTarget counts and logs a successful refresh that finished later
// after its oldest change's commit than the view's target.
func (s *Scheduler) checkTarget(name string, w *work, out refresher.Outcome) {
	t, ok := s.targets[name]
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
	took, planned := out.FinishedAt.Sub(out.StartedAt), w.planned
	switch {
	case w.attempt > 1:
		return fmt.Sprintf("its refresh failed first (attempt %d)", w.attempt)
	case w.baseAttempts > 1:
		return "a base view's refresh failed first"
	case w.waitedForWorker:
		return "workers busy: it was due while every worker refreshed another view"
	case w.waitedForRelated:
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
