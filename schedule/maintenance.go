package schedule

import (
	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// setMaintenance installs the plans of the views maintained incrementally;
// setCatalog must follow, to select the relations they follow.
func (s *Scheduler) setMaintenance(m map[string]*refresher.Maintenance) {
	s.maintenance = m
}

// selectImaged works out the relations whose changed rows a maintained
// view follows: the tables whose changes name view rows, and their
// partitions.
func (s *Scheduler) selectImaged(cat *catalog.Catalog) {
	imaged := map[uint32]bool{}
	for name, m := range s.maintenance {
		v := cat.Views[name]
		if v == nil || m.Plan == nil {
			continue
		}
		for _, t := range v.Sources {
			if src := m.Plan.Sources[t.Publish.Name]; src == nil || src.Full != "" {
				continue
			}
			imaged[t.OID] = true
			for _, p := range cat.Partitions(t.OID) {
				imaged[p] = true
			}
		}
	}
	s.imaged.Store(&imaged)
}

// WantsImages reports whether the stream should hand over the changed rows
// of relation oid (replication.Stream.SelectImages): a maintained view
// follows them. Safe on any goroutine.
func (s *Scheduler) WantsImages(oid uint32) bool {
	m := s.imaged.Load()
	return m != nil && (*m)[oid]
}
