package schedule

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/debounce"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// streamItem is what the stream hands the scheduler: a committed transaction,
// or (tx nil) progress, a position with no transaction in flight before it
// from a keepalive: the server has sent everything it had.
type streamItem struct {
	tx       *replication.Transaction
	progress pglogrepl.LSN
	// newRels: the ancestors of the relations tx changes that the catalog
	// did not know (resolveNewRelations).
	newRels map[uint32]ancestry
}

// CatalogUpdate is a discovery's result.
type CatalogUpdate struct {
	Catalog *catalog.Catalog
	// Startup lists views whose earlier changes were not streamed (new
	// views, views over newly published tables); their refreshes wait for
	// the transactions of Barrier (see refresher.Writers).
	Startup []string
	Barrier []uint64
	// Maintenance has the views maintained incrementally (the catalog's
	// views with Maintained set), by name.
	Maintenance map[string]*refresher.Maintenance
	// Repartitioned: views whose partitioned sources gained or lost
	// partitions, with those sources.
	Repartitioned map[string][]string
	// Discovered: the catalog shows every partition change before this
	// position.
	Discovered pglogrepl.LSN
}

type result struct {
	view    string
	outcome refresher.Outcome
}

// ErrServerGoingAway means a refresh found the server shutting down or
// refusing connections: the stream must let go of the slot (a shutting-down
// server waits for it), and the daemon reconnect once the server is back.
var ErrServerGoingAway = errors.New("the server is going away")

// EventSink takes the refresh events the scheduler reports; it must not
// block.
type EventSink interface {
	PublishRefresh(schema, name string, e events.Refresh)
}

// Options are what a Scheduler starts from.
type Options struct {
	// Config gives the views' settings, the number of workers and the
	// shutdown timeout.
	Config  config.Config
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	Catalog *catalog.Catalog
	// Maintenance is CatalogUpdate.Maintenance for Catalog.
	Maintenance map[string]*refresher.Maintenance
	// Findings are the check findings of Catalog: they name the likely
	// cause of a view's churn.
	Findings []catalog.Finding
	// Start is where the slot starts streaming; Confirm is told every
	// position the slot may confirm, once every refresh covering the
	// changes before it is done.
	Start   pglogrepl.LSN
	Confirm func(pglogrepl.LSN)
	// Events takes the refresh events; nil publishes none.
	Events EventSink
	// Queries brings the HTTP endpoints' questions (see Queries); nil
	// brings none.
	Queries *Queries
	// WAL is the server's WAL geometry, to read a waiter's position.
	WAL replication.WALGeometry
	// PartitionAncestors reads the partition ancestors of a relation the
	// catalog does not know (a partition created after discovery), itself
	// first. It runs on the stream's goroutine, in Commit.
	PartitionAncestors func(ctx context.Context, oid uint32) ([]uint32, error)
	// Discovered is where the discovery of Catalog read the WAL (see
	// CatalogUpdate.Discovered); Rediscover asks for a discovery now, for a
	// waiter only a discovery can answer. It must not block.
	Discovered pglogrepl.LSN
	Rediscover func()
	// ClockSkew is how far the daemon's clock is ahead of the server's:
	// commit times are moved to the daemon's clock.
	ClockSkew time.Duration
	// Durations are the views' last refresh durations, to plan the
	// staleness targets from before their first refresh: of plain
	// refreshes and full recomputes, and IncrementalDurations of
	// incremental maintenances.
	Durations            map[string]time.Duration
	IncrementalDurations map[string]time.Duration
	// Startup lists the views whose earlier changes the stream will not
	// bring, refreshed once the transactions of Barrier have ended.
	Startup []string
	Barrier []uint64
}

// Scheduler owns every piece of mutable state of a streaming daemon: the
// catalog, the debouncer, the pending work per view and the watermark. One
// goroutine runs it (Run); the stream, discovery, the workers and the
// queries reach it through channels.
type Scheduler struct {
	cfg                config.Config
	logger             *slog.Logger
	confirm            func(pglogrepl.LSN)
	metrics            *metrics.Metrics
	partitionAncestors func(ctx context.Context, oid uint32) ([]uint32, error)

	inbox    chan streamItem
	catalogs chan CatalogUpdate
	jobs     chan refresher.Request
	results  chan result
	// workCtx is the running refreshes' context: it outlives Run's by up to
	// the shutdown timeout.
	workCtx    context.Context
	cancelWork context.CancelFunc
	// queries come from the HTTP endpoints; waiters are the queries
	// waiting for a view to be fresh through a position.
	queries <-chan viewQuery
	waiters waiters
	wal     replication.WALGeometry
	// discovered is where the last discovery applied read the WAL: views
	// whose sources change outside the stream are fresh through nothing
	// past it. rediscover asks for a discovery now, for a waiter held by it.
	discovered pglogrepl.LSN
	rediscover func()

	catalog *catalog.Catalog
	// published is catalog for the stream's goroutine (resolveNewRelations).
	published atomic.Pointer[catalog.Catalog]
	// maintenance has the views maintained incrementally; imaged the
	// relations whose changed rows they follow, for the stream's goroutine
	// (SelectImages).
	maintenance map[string]*refresher.Maintenance
	imaged      atomic.Pointer[map[uint32][]string]
	debouncer   *debounce.Debouncer
	watermark   *replication.Watermark
	pending     map[string]*work
	running     map[string]*work
	// txns logs the transactions pending and running work covers.
	txns      *refresher.TxnLog
	free      int
	ancestors *lru.Cache[uint32, []uint32] // relations discovery did not see
	planner   *planner
	reporter  *reporter
	// periods are the views with refresh_every (see periodic.go).
	periods map[string]period
	// pendingViews is len(pending), for PendingViews.
	pendingViews atomic.Int64
	catchUp      catchUp
	// clockSkew is how far the daemon's clock is ahead of the server's
	// (Options.ClockSkew): Commit moves commit times to the daemon's clock.
	clockSkew time.Duration
	// gone is set when a refresh found the server going away: Run ends.
	gone error
	// now is the debouncer's clock, moved once per loop iteration: the
	// changes of one batch (a transaction touching a base's sources and its
	// dependent's, the startup requests) are equally old, so the base goes
	// first.
	now time.Time
}

// New returns a scheduler for one streaming attempt: hand it to the stream
// as its handler (Commit, Progress), and run Run and Options.Config.Workers
// goroutines of Work.
func New(opts Options) *Scheduler {
	ancestors, _ := lru.New[uint32, []uint32](10_000) // cannot fail for a positive size
	workCtx, cancelWork := context.WithCancel(context.Background())
	s := &Scheduler{
		cfg:                opts.Config,
		logger:             opts.Logger,
		confirm:            opts.Confirm,
		metrics:            opts.Metrics,
		partitionAncestors: opts.PartitionAncestors,
		inbox:              make(chan streamItem, 4096),
		catalogs:           make(chan CatalogUpdate),
		jobs:               make(chan refresher.Request, opts.Config.Workers),
		results:            make(chan result, opts.Config.Workers),
		workCtx:            workCtx,
		cancelWork:         cancelWork,
		wal:                opts.WAL,
		discovered:         opts.Discovered,
		rediscover:         opts.Rediscover,
		watermark:          replication.NewWatermark(opts.Start),
		pending:            map[string]*work{},
		running:            map[string]*work{},
		txns:               refresher.NewTxnLog(),
		free:               opts.Config.Workers,
		ancestors:          ancestors,
		planner:            newPlanner(opts.Config, opts.Logger),
		reporter:           newReporter(opts.Logger, opts.Metrics, opts.Events, opts.Findings),
		clockSkew:          opts.ClockSkew,
		now:                time.Now(),
	}
	if opts.Queries != nil {
		s.queries = opts.Queries.ch
	}
	if s.rediscover == nil {
		s.rediscover = func() {}
	}
	s.debouncer = debounce.New(func() time.Time { return s.now })
	s.setMaintenance(opts.Maintenance)
	s.setCatalog(opts.Catalog)
	s.seedDurations(opts.Durations, opts.IncrementalDurations)
	s.startup(opts.Startup, opts.Barrier)
	return s
}

// Commit and Progress make the scheduler the stream's handler
// (replication.Handler).
func (s *Scheduler) Commit(ctx context.Context, tx *replication.Transaction) error {
	tx.CommitTime = onDaemonClock(tx.CommitTime, s.clockSkew)
	return s.send(ctx, streamItem{tx: tx, newRels: s.resolveNewRelations(ctx, tx)})
}

func (s *Scheduler) Progress(ctx context.Context, lsn pglogrepl.LSN) error {
	return s.send(ctx, streamItem{progress: lsn})
}

func (s *Scheduler) send(ctx context.Context, item streamItem) error {
	select {
	case s.inbox <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// UpdateCatalog hands the scheduler a discovery's result; it returns once
// the scheduler has taken it, or with ctx's error.
func (s *Scheduler) UpdateCatalog(ctx context.Context, u CatalogUpdate) error {
	select {
	case s.catalogs <- u:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PendingViews is how many views have changes waiting for a refresh; any
// goroutine may ask.
func (s *Scheduler) PendingViews() int { return int(s.pendingViews.Load()) }

// Run schedules refreshes until ctx ends, then waits up to the shutdown
// timeout for running refreshes and cancels the rest. It returns early,
// with ErrServerGoingAway, when the server is shutting down. The Work
// goroutines return once it has.
func (s *Scheduler) Run(ctx context.Context) error {
	defer close(s.jobs)
	defer s.cancelWork()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	gauges := time.NewTicker(time.Second)
	defer gauges.Stop()
	done := ctx.Done()
	var grace <-chan time.Time
	stopping := false
	defer s.dropWaiters()
	for {
		s.now = time.Now()
		if !stopping {
			s.requestPeriodic()
			s.dispatch()
		}
		s.answerWaiters()
		s.confirm(s.watermark.Confirmable())
		s.metrics.PendingViews.Set(float64(len(s.pending)))
		s.pendingViews.Store(int64(len(s.pending)))
		if stopping && len(s.running) == 0 {
			return nil
		}
		if s.gone != nil && !stopping {
			return s.gone
		}
		var wake <-chan time.Time
		at, ok := s.debouncer.Next()
		ok = ok && s.free > 0
		if idle, behind := s.catchUp.idleAt(); behind && (!ok || idle.Before(at)) {
			at, ok = idle, true
		}
		if due, periodic := s.nextPeriodic(); periodic && (!ok || due.Before(at)) {
			at, ok = due, true
		}
		if ok && !stopping {
			timer.Reset(time.Until(at))
			wake = timer.C
		}
		select {
		case <-done:
			stopping, done = true, nil
			s.logger.Info("stopping: waiting for running refreshes", "running", len(s.running), "timeout", s.cfg.ShutdownTimeout)
			grace = time.After(s.cfg.ShutdownTimeout)
		case <-grace:
			s.logger.Warn("shutdown timeout: cancelling running refreshes", "running", len(s.running))
			s.cancelWork()
			grace = nil
		case item := <-s.inbox:
			s.now = time.Now()
			if !stopping {
				s.receive(item)
				s.drainInbox()
			}
		case u := <-s.catalogs:
			s.now = time.Now()
			if !stopping {
				s.applyCatalog(u)
			}
		case r := <-s.results:
			s.now = time.Now()
			s.finish(r)
		case q := <-s.queries:
			s.answer(q)
		case <-gauges.C:
			s.updateGauges()
			if s.planner.lagChanged(s.now) {
				s.replan()
			}
		case <-wake:
			s.now = time.Now()
			if idle, behind := s.catchUp.idleAt(); behind && !s.now.Before(idle) {
				s.setBehind(false)
			}
		}
	}
}

// dispatch starts every due view a free worker can take.
func (s *Scheduler) dispatch() {
	if s.free == 0 && !s.planner.hasTargets() {
		return
	}
	s.followKinds() // what is due depends on the kind of refresh pending
	due := s.debouncer.Due()
	for i, name := range due {
		if s.free == 0 {
			for _, n := range due[i:] {
				if w := s.pending[n]; w != nil {
					w.late.waitedForWorker = true
				}
			}
			return
		}
		if !s.debouncer.Startable(name) {
			if w := s.pending[name]; w != nil {
				w.late.waitedForRelated = true
			}
			continue // a view started just now rules it out (its base, or a dependent)
		}
		w, view := s.pending[name], s.catalog.Views[name]
		delete(s.pending, name)
		if w == nil || view == nil {
			// Unreachable (pending work and the debouncer change together),
			// but a view left due would spin this loop, and a hold left
			// behind would keep the slot.
			if w != nil {
				w.debt.release(s.watermark)
			}
			s.debouncer.Start(name)
			s.debouncer.Finish(name)
			continue
		}
		w.late.heldByMinInterval = max(w.late.heldByMinInterval, s.debouncer.MinIntervalHold(name))
		s.debouncer.Start(name)
		s.restartPeriod(name)
		s.running[name] = w
		s.free--
		w.attempt++
		w.late.planned = s.planner.durations.estimate(name, s.workKind(name, w))
		if w.lsn == 0 {
			w.lsn = s.watermark.SeenLSN()
		}
		s.settleTxns(w)
		req := refresher.Request{View: view, Mode: RefreshMode(s.cfg, name), LSN: w.lsn,
			Dependents: s.catalog.TransitiveDependents(name),
			Txns:       s.txnSpan(w), TxnsFrom: w.txns.first, Deferrable: !w.unconditional, Barrier: w.barrier.xids}
		if m := s.maintenance[name]; m != nil {
			req.Maintenance = &refresher.Maintenance{Plan: m.Plan, TimeZone: m.TimeZone, Changes: &w.follow, NameRows: s.rowsFollowed(name)}
		}
		s.jobs <- req
	}
}

// Work runs the refreshes the scheduler hands out, with refresh, until Run
// has returned; the daemon runs one per worker. A refresh still running
// when Run gives up waiting for it at shutdown has its context cancelled.
func (s *Scheduler) Work(refresh func(context.Context, refresher.Request) refresher.Outcome) {
	for req := range s.jobs {
		s.results <- result{view: req.View.Name, outcome: refresh(s.workCtx, req)}
	}
}

// pendingWork returns the view's accumulating work, creating it.
func (s *Scheduler) pendingWork(view string) *work {
	w := s.pending[view]
	if w == nil {
		w = &work{}
		s.pending[view] = w
	}
	return w
}
