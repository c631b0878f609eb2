package schedule

import (
	"context"
	"errors"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/replication"
)

// route turns a committed transaction into pending work for the views its
// changes and requests concern; newRels resolves the relations the catalog
// did not know when the stream handed it over.
func (s *Scheduler) route(tx *replication.Transaction, newRels map[uint32]ancestry) {
	for _, c := range tx.Changes {
		views, source := s.readers(c, newRels)
		rows := c.Rows
		if c.Truncated {
			rows++
		}
		if source != "" {
			s.reporter.walChanged(source, rows)
		}
		for _, v := range views {
			s.change(v, tx, rows, source, events.ReasonChange)
			if m := s.maintenance[v]; m != nil {
				s.pending[v].follow.Follow(m.Plan, source, c)
			}
		}
	}
	for _, req := range tx.Requests {
		s.request(tx, req)
	}
}

// ancestry is a relation's partition ancestors, itself first (nil for a
// relation that is not a partition), or why they could not be read.
type ancestry struct {
	ancestors []uint32
	err       error
}

// partitionLookupTimeout bounds the catalog query for a relation created
// after discovery.
const partitionLookupTimeout = 10 * time.Second

// resolveNewRelations reads the ancestors of the relations tx changes that
// the catalog does not know: partitions created after discovery. It runs on
// the stream's goroutine, in Commit, not on the scheduler's: the query waits
// for a pool connection, which refreshes may all hold, and the scheduler
// must go on answering the stream, the refreshes and the HTTP waits.
func (s *Scheduler) resolveNewRelations(ctx context.Context, tx *replication.Transaction) map[uint32]ancestry {
	cat := s.published.Load()
	var out map[uint32]ancestry
	for _, c := range tx.Changes {
		if cat.Knows(c.OID) {
			continue
		}
		if _, done := out[c.OID]; done {
			continue
		}
		if out == nil {
			out = map[uint32]ancestry{}
		}
		if anc, ok := s.ancestors.Get(c.OID); ok {
			out[c.OID] = ancestry{ancestors: anc}
			continue
		}
		lookupCtx, cancel := context.WithTimeout(ctx, partitionLookupTimeout)
		anc, err := s.partitionAncestors(lookupCtx, c.OID)
		cancel()
		out[c.OID] = ancestry{ancestors: anc, err: err}
	}
	return out
}

// readers finds the views a change affects and the source name to report.
func (s *Scheduler) readers(c replication.RelationChange, newRels map[uint32]ancestry) (views []string, source string) {
	views, source, known := s.catalog.Route(c.OID)
	if known {
		return views, source
	}
	// A partition created after discovery: its changes arrive under its own
	// name, so find the published root it belongs to.
	anc, ok := s.ancestors.Get(c.OID)
	if !ok {
		resolved, looked := newRels[c.OID]
		if !looked || resolved.err != nil {
			// Not looked up: the catalog that knew it when the stream
			// handed it over was replaced since. A spurious refresh is
			// better than a lost one.
			err := resolved.err
			if !looked {
				err = errors.New("the catalog changed while the transaction was on its way")
			}
			s.logger.Warn("cannot tell which views read a new relation: refreshing all", "relation", c.Namespace+"."+c.Name, "error", err)
			return s.catalog.Names(), c.Namespace + "." + c.Name
		}
		anc = resolved.ancestors
		s.ancestors.Add(c.OID, anc)
	}
	return s.catalog.RouteAncestors(anc)
}

func (s *Scheduler) change(view string, tx *replication.Transaction, rows int, source string, reason events.Reason) {
	w := s.pendingWork(view)
	w.debt.holdAt(s.watermark, tx.CommitLSN)
	w.debt.owe(tx.EndLSN)
	w.addTxn(s.logTxn(tx))
	w.addReason(reason)
	w.changes += rows
	w.noteChange(tx.CommitTime)
	w.lsn = max(w.lsn, tx.EndLSN)
	w.addSource(source)
	if reason == events.ReasonManual {
		s.debouncer.Request(view)
	} else {
		s.debouncer.Change(view)
	}
}

// request handles pg_logical_emit_message(true, 'mvrefresher', name): a view
// name asks for that view now, a source table name acts as a change to it.
func (s *Scheduler) request(tx *replication.Transaction, name string) {
	schema, rel, err := config.ParseQualifiedName(name)
	if err != nil {
		s.logger.Warn("ignoring refresh request", "request", name, "error", err)
		return
	}
	view, table := s.catalog.Lookup(schema, rel)
	switch {
	case view != nil:
		s.change(view.Name, tx, 0, name, events.ReasonManual)
	case table != nil:
		views, source, _ := s.catalog.Route(table.OID)
		for _, v := range views {
			s.change(v, tx, 0, source, events.ReasonChange)
			s.pending[v].follow.Escalate("a refresh request for " + source)
		}
	default:
		s.logger.Warn("ignoring refresh request: no managed view or source table by that name", "request", name)
	}
}

// setCatalog installs a catalog and registers its views with the debouncer.
func (s *Scheduler) setCatalog(cat *catalog.Catalog) {
	if old := s.catalog; old != nil {
		for name := range old.Views {
			if cat.Views[name] != nil {
				continue
			}
			s.debouncer.Remove(name)
			s.reporter.forget(name)
			s.planner.durations.forget(name)
			if w := s.pending[name]; w != nil {
				w.debt.release(s.watermark)
				delete(s.pending, name)
			}
			s.logger.Info("view no longer managed", "view", name)
		}
	}
	s.catalog = cat
	s.published.Store(cat)
	s.selectImaged(cat)
	// Relations the old catalog did not know may be known now, or belong
	// elsewhere (a partition detached and attached to another table).
	s.ancestors.Purge()
	s.planner.plan(cat)
	s.setPeriods(cat)
	for _, name := range cat.Names() {
		s.setRules(name)
		if s.running[name] != nil && !s.debouncer.Running(name) {
			// Dropped and created again while its refresh ran: one refresh
			// of a view at a time, and finish must find its work.
			s.debouncer.Start(name)
		}
	}
}

func (s *Scheduler) applyCatalog(u CatalogUpdate) {
	s.setMaintenance(u.Maintenance)
	s.setCatalog(u.Catalog)
	s.discovered = max(s.discovered, u.Discovered)
	s.startup(u.Startup, u.Barrier)
	for view, sources := range u.Repartitioned {
		if s.catalog.Views[view] == nil {
			continue
		}
		w := s.pendingWork(view)
		w.debt.holdAt(s.watermark, s.watermark.SeenLSN())
		w.debt.owesAll = true
		w.addReason(events.ReasonChange)
		w.unconditional = true
		w.follow.Escalate("partitions attached, detached or dropped")
		w.noteChange(s.now)
		for _, src := range sources {
			w.addSource(src)
		}
		s.debouncer.Change(view)
	}
}

// startup asks for a refresh of views whose earlier changes were never
// streamed, once the transactions of barrier have ended. The work holds the
// slot where the stream is now, so that the confirmed position passing a
// point means all work queued before it is done, startup refreshes
// included.
func (s *Scheduler) startup(views []string, barrier []uint64) {
	for _, name := range views {
		v := s.catalog.Views[name]
		if v == nil {
			continue
		}
		s.reporter.startupTotal++
		w := s.pendingWork(name)
		w.debt.holdAt(s.watermark, s.watermark.SeenLSN())
		w.debt.owesAll = true
		w.addReason(events.ReasonStartup)
		w.unconditional = true
		w.barrier.merge(txnBarrier{xids: barrier})
		for _, src := range v.SourceNames() {
			w.addSource(src)
		}
		s.debouncer.Request(name)
	}
}
