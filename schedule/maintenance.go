package schedule

import (
	"slices"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// setMaintenance installs the plans of the views maintained incrementally;
// setCatalog must follow, to select the relations they follow.
func (s *Scheduler) setMaintenance(m map[string]*refresher.Maintenance) {
	s.maintenance = m
	follows := map[string]bool{}
	for name, vm := range m {
		if followsRows(vm, m) {
			follows[name] = true
		}
	}
	s.planner.follows = follows
}

// rowsFollowed reports whether a maintained view built on the maintained
// view name follows the rows its maintenances recompute: only then do they
// name them (refresher.Maintenance.NameRows).
func (s *Scheduler) rowsFollowed(name string) bool {
	base := s.maintenance[name]
	if base == nil || base.Plan == nil {
		return false
	}
	for _, dep := range s.catalog.Dependents(name) {
		if m := s.maintenance[dep]; m != nil && m.Plan != nil && m.Plan.FollowsTable(base.Plan) == "" {
			return true
		}
	}
	return false
}

// selectImaged works out the relations whose changed rows a maintained
// view follows (the tables whose changes name view rows, and their
// partitions), and the columns those rows name view rows by or the view's
// WHERE judges them by.
func (s *Scheduler) selectImaged(cat *catalog.Catalog) {
	imaged := map[uint32][]string{}
	add := func(oid uint32, columns []string) {
		for _, c := range columns {
			if !slices.Contains(imaged[oid], c) {
				imaged[oid] = append(imaged[oid], c)
			}
		}
	}
	for name, m := range s.maintenance {
		v := cat.Views[name]
		if v == nil || m.Plan == nil {
			continue
		}
		for _, t := range v.Sources {
			src := m.Plan.Sources[t.Publish.Name]
			if src == nil || src.Full != "" {
				continue
			}
			add(t.OID, src.ImageColumns())
			for _, p := range cat.Partitions(t.OID) {
				add(p, src.ImageColumns())
			}
		}
	}
	s.imaged.Store(&imaged)
}

// WantsImages returns the columns of the changed rows of relation oid the
// stream should hand over (replication.Stream.SelectImages), nil when no
// maintained view follows them. Safe on any goroutine.
func (s *Scheduler) WantsImages(oid uint32) []string {
	if m := s.imaged.Load(); m != nil {
		return (*m)[oid]
	}
	return nil
}
