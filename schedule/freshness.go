package schedule

import (
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// answer handles a query at once, or keeps it among the waiters.
func (s *Scheduler) answer(q viewQuery) {
	if q.view == "" {
		views := make([]events.ViewState, 0, len(s.catalog.Views))
		for _, name := range s.catalog.Names() {
			views = append(views, s.viewState(name))
		}
		q.reply <- viewAnswer{views: views}
		return
	}
	name, ok := s.lookupView(q.view)
	if !ok {
		q.reply <- viewAnswer{err: fmt.Errorf("%s: %w", q.view, ErrUnknownView)}
		return
	}
	q.view = name
	if q.wait {
		q.lsn = s.wal.LastRecordEnd(q.lsn)
		if through, ok := s.freshThrough(name); !ok || through < q.lsn {
			s.waiters.add(q)
			if s.discovered < q.lsn && s.changesOutsideTheStream(name) {
				s.rediscover()
			}
			return
		}
	}
	q.reply <- viewAnswer{views: []events.ViewState{s.viewState(name)}}
}

// answerWaiters answers the waiters whose view is fresh enough now (or
// gone). It looks at each view with waiters once, and computes how fresh a
// view is only when the position received reaches its earliest waiter.
func (s *Scheduler) answerWaiters() {
	s.waiters.sweepGivenUp()
	received := s.watermark.SeenLSN()
	for view := range s.waiters.byView {
		if s.catalog.Views[view] == nil {
			s.waiters.answerView(view, viewAnswer{err: fmt.Errorf("%s: %w", view, ErrUnknownView)})
			continue
		}
		if s.waiters.earliest(view) > received {
			continue // a view is fresh through no position not received yet
		}
		through, ok := s.freshThrough(view)
		if !ok || s.waiters.earliest(view) > through {
			continue
		}
		state := s.viewState(view)
		s.waiters.answerThrough(view, through, func() viewAnswer {
			return viewAnswer{views: []events.ViewState{state}}
		})
	}
}

// dropWaiters tells the waiters this scheduler is done: they ask the next
// one.
func (s *Scheduler) dropWaiters() {
	s.waiters.answerAll(viewAnswer{err: ErrNotStreaming})
}

// lookupView finds a managed view by its qualified name, quoted or not.
func (s *Scheduler) lookupView(name string) (string, bool) {
	if s.catalog.Views[name] != nil {
		return name, true
	}
	schema, rel, err := config.ParseQualifiedName(name)
	if err != nil {
		return "", false
	}
	if v, _ := s.catalog.Lookup(schema, rel); v != nil {
		return v.Name, true
	}
	return "", false
}

// freshThrough is the position the view is fresh through: just before the
// oldest change that waits for a refresh of the view or of a view it is
// built on, else everything received, but no further than the last
// discovery for a view whose sources change outside the stream. ok is
// false while the daemon can vouch for no position.
func (s *Scheduler) freshThrough(name string) (through pglogrepl.LSN, ok bool) {
	through = s.watermark.SeenLSN()
	if s.changesOutsideTheStream(name) {
		through = min(through, s.discovered)
	}
	for _, n := range append(s.catalog.TransitiveBases(name), name) {
		for _, w := range []*work{s.pending[n], s.running[n]} {
			switch {
			case w == nil:
			case w.debt.owesAll:
				return 0, false
			case w.debt.owedFrom != 0:
				through = min(through, w.debt.owedFrom-1)
			}
		}
	}
	return through, true
}

// changesOutsideTheStream reports whether the view or a view it is built
// on reads a source that can change without a row change in the WAL.
func (s *Scheduler) changesOutsideTheStream(name string) bool {
	for _, n := range append(s.catalog.TransitiveBases(name), name) {
		if v := s.catalog.Views[n]; v != nil && v.ChangesOutsideTheStream() {
			return true
		}
	}
	return false
}

// viewState is what the HTTP endpoints show of a view.
func (s *Scheduler) viewState(name string) events.ViewState {
	st := events.ViewState{View: name, ReceivedLSN: s.watermark.SeenLSN().String(),
		DependsOn: s.catalog.Views[name].Bases, LastRefresh: s.reporter.lastRefresh[name]}
	if st.DependsOn == nil {
		st.DependsOn = []string{} // JSON: [], not null
	}
	if through, ok := s.freshThrough(name); ok {
		st.FreshThrough = through.String()
	}
	st.Pending = st.FreshThrough != st.ReceivedLSN
	for _, w := range []*work{s.pending[name], s.running[name]} {
		if w != nil {
			st.PendingChanges += w.changes
			if !w.firstChangeAt.IsZero() && (st.PendingSince.IsZero() || w.firstChangeAt.Before(st.PendingSince)) {
				st.PendingSince = w.firstChangeAt.UTC()
			}
		}
	}
	st.Refreshing = s.running[name] != nil
	if t, ok := s.planner.targets[name]; ok {
		st.MaxStalenessMS, st.MaxStalenessFrom = ms(t.MaxStaleness), t.From
	}
	return st
}
