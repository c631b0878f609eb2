package schedule

import (
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/events"
)

// A view whose rows depend on the time (now() or current_date in a WHERE
// clause) changes with no change in the WAL: refresh_every refreshes it
// when that long has passed since its last refresh started (since the
// scheduler started, for the first), so that no pg_cron job is needed next
// to the daemon. The refresh covers no transaction: it holds no slot
// position and owes no position of the view's fresh-through, so waiters
// and the slot see it as nothing. Any start of the view, change-driven
// included, starts a new period: the view was just refreshed.

// period is a view's refresh_every and when its next periodic refresh is
// due.
type period struct {
	every time.Duration
	due   time.Time
}

// setPeriods keeps a period for every view of cat with refresh_every: a
// view new to the scheduler starts its first period now, a known one keeps
// its due time.
func (s *Scheduler) setPeriods(cat *catalog.Catalog) {
	periods := make(map[string]period, len(s.periods))
	for _, name := range cat.Names() {
		every := s.cfg.ViewSettings(name).RefreshEvery
		if every <= 0 {
			continue
		}
		p, known := s.periods[name]
		if !known {
			p.due = s.now.Add(every)
		}
		p.every = every
		periods[name] = p
	}
	s.periods = periods
}

// requestPeriodic asks for a refresh of every view whose period has run
// out, and starts its next period: until the refresh starts (and restarts
// the period), a view held back by min_interval or a running base is not
// asked for again on every turn of the loop.
func (s *Scheduler) requestPeriodic() {
	for name, p := range s.periods {
		if s.now.Before(p.due) {
			continue
		}
		w := s.pendingWork(name)
		w.addReason(events.ReasonPeriodic)
		// Nothing in its transactions asks for it: it runs whatever its
		// snapshot sees.
		w.unconditional = true
		s.debouncer.Request(name)
		s.restartPeriod(name)
	}
}

// restartPeriod starts the view's next period now (a refresh of it
// started), if it has one.
func (s *Scheduler) restartPeriod(name string) {
	if p, ok := s.periods[name]; ok {
		p.due = s.now.Add(p.every)
		s.periods[name] = p
	}
}

// nextPeriodic is the earliest time a periodic refresh is due; ok is false
// when no view has refresh_every.
func (s *Scheduler) nextPeriodic() (at time.Time, ok bool) {
	for _, p := range s.periods {
		if !ok || p.due.Before(at) {
			at, ok = p.due, true
		}
	}
	return at, ok
}
