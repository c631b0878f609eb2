package schedule

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// sim runs a scheduler on its fake clock, as Run would, without a server:
// the clock moves in steps of simStep; at each step the refreshes that are
// done finish (each takes took[view], or tookIncremental[view] for an
// incremental maintenance, and succeeds), then the periodic refreshes due
// are asked for and the due views start. Every refresh event is kept.
type sim struct {
	t               *testing.T
	s               *Scheduler
	took            map[string]time.Duration
	tookIncremental map[string]time.Duration
	// escalate, when set, is why every maintenance recomputes its view
	// whole at run time (as too many groups or the cost guard would).
	escalate string
	running  []simRefresh
	events   []events.Refresh
	xid      uint32
	end      pglogrepl.LSN
}

type simRefresh struct {
	req     refresher.Request
	started time.Time
	// maintained is what a maintenance (req.Maintenance) did.
	maintained *maintain.Result
}

const simStep = 5 * time.Millisecond

func (m *sim) PublishRefresh(_, _ string, e events.Refresh) { m.events = append(m.events, e) }

// newSim manages cat's views, all reading source OID srcOID, with cfg;
// the options adjust changes. took seeds the duration estimates.
func newSim(t *testing.T, cfg config.Config, took map[string]time.Duration, views []*catalog.View, adjust ...func(*Options)) *sim {
	t.Helper()
	m := &sim{t: t, took: took, end: 0x100}
	opts := Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(func() bool { return true }, func() bool { return false }),
		Catalog: catalog.New(views...), Start: m.end, Confirm: func(pglogrepl.LSN) {}, Events: m, Durations: took}
	for _, f := range adjust {
		f(&opts)
	}
	m.s = New(opts)
	return m
}

// commit hands the scheduler a transaction changing the source now.
func (m *sim) commit() {
	m.commitChange(replication.RelationChange{OID: srcOID, Namespace: "app", Name: "src", Rows: 1})
}

// commitChange hands the scheduler a transaction making change c now.
func (m *sim) commitChange(c replication.RelationChange) {
	m.xid++
	commit := m.end + 0x10
	m.end = commit + 0x10
	m.s.receive(streamItem{tx: &replication.Transaction{Xid: m.xid, CommitLSN: commit, EndLSN: m.end, CommitTime: m.s.now,
		Changes: []replication.RelationChange{c}}})
	m.s.dispatch()
	m.take()
}

// advance moves the clock by d, step by step.
func (m *sim) advance(d time.Duration) {
	for until := m.s.now.Add(d); m.s.now.Before(until); {
		m.s.now = m.s.now.Add(simStep)
		kept := m.running[:0]
		for _, r := range m.running {
			name := r.req.View.Name
			took := m.took[name]
			if r.maintained != nil && r.maintained.Full == "" {
				took = m.tookIncremental[name]
			}
			if finished := r.started.Add(took); !finished.After(m.s.now) {
				m.s.finish(result{view: name, outcome: refresher.Outcome{LSN: r.req.LSN, Recorded: true,
					StartedAt: r.started, FinishedAt: finished, VisibleBefore: r.req.Txns.To + 1, Maintained: r.maintained}})
				continue
			}
			kept = append(kept, r)
		}
		m.running = kept
		m.s.requestPeriodic()
		m.s.dispatch()
		m.take()
	}
}

// take starts the refreshes dispatch handed out.
func (m *sim) take() {
	for {
		select {
		case req := <-m.s.jobs:
			r := simRefresh{req: req, started: m.s.now}
			if req.Maintenance != nil {
				r.maintained = &maintain.Result{Full: req.Maintenance.Changes.Full()}
				if r.maintained.Full == "" {
					r.maintained.Full = m.escalate
				}
			}
			m.running = append(m.running, r)
		default:
			return
		}
	}
}

// refreshesOf returns the events of view's refreshes.
func (m *sim) refreshesOf(view string) []events.Refresh {
	var out []events.Refresh
	for _, e := range m.events {
		if e.View == view {
			if e.Status != events.StatusOK {
				m.t.Fatalf("refresh of %s failed in a simulation: %+v", view, e)
			}
			out = append(out, e)
		}
	}
	return out
}

func summarize(evs []events.Refresh) string {
	var s string
	for _, e := range evs {
		s += fmt.Sprintf(" [%d changes, %.0f ms stale]", e.Changes, e.StalenessMS)
	}
	return s
}
