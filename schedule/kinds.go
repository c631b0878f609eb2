package schedule

import "github.com/mvrefresher/mvrefresher/refresher"

// followsRows reports whether changes to m's view can name the rows to
// recompute: some source's changed rows do, a maintained view's (in all,
// by name) being the rows its maintenances name. A view none of whose
// sources can is recomputed whole on every change.
func followsRows(m *refresher.Maintenance, all map[string]*refresher.Maintenance) bool {
	if m == nil || m.Plan == nil {
		return false
	}
	for name, src := range m.Plan.Sources {
		if base := all[name]; base != nil {
			if base.Plan != nil && m.Plan.FollowsTable(base.Plan) == "" {
				return true
			}
			continue
		}
		if src.Full == "" {
			return true
		}
	}
	return false
}

// workKind is the kind of refresh w, the view's work (nil for none yet),
// runs: a maintained view's follows the changed rows unless something
// escalated it to a full recompute.
func (s *Scheduler) workKind(name string, w *work) refreshKind {
	if !s.planner.follows[name] || w != nil && w.follow.Full() != "" {
		return kindFull
	}
	return kindIncremental
}

// setRules hands the debouncer the view's rules, planned for the kind of
// refresh its pending work runs, and notes that kind for followKinds.
func (s *Scheduler) setRules(name string) {
	kind := s.workKind(name, s.pending[name])
	if _, ok := s.planner.targets[name]; ok && s.planner.follows[name] {
		s.planner.planned[name] = kind
	}
	s.debouncer.Set(name, s.planner.settings(name, kind), s.catalog.TransitiveBases(name))
}

// followKinds sets the rules of each maintained view with a target again
// when its pending work has come to run another kind of refresh than they
// were planned for: an escalation (a TRUNCATE, too many rows, a startup)
// makes it a full recompute, which must start earlier; once that has
// started, the next work is incremental again. Only such views are looked
// at, and only one whose kind changed is set again.
func (s *Scheduler) followKinds() {
	for name, kind := range s.planner.planned {
		if s.workKind(name, s.pending[name]) != kind {
			s.setRules(name)
		}
	}
}
