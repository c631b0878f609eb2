package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/debounce"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// streamed is what the stream hands the scheduler: a committed transaction,
// or (tx nil) progress, a position with no transaction in flight before it
// from a keepalive: the server has sent everything it had.
type streamed struct {
	tx       *replication.Transaction
	progress pglogrepl.LSN
	// newRels: the ancestors of the relations tx changes that the catalog
	// did not know (resolveNewRelations).
	newRels map[uint32]ancestry
}

// catchUpLag is how old a transaction may be when it arrives before the
// stream counts as catching up on a backlog; while it does, views wait for
// it to catch up (or for their max wait) instead of refreshing in between.
const catchUpLag = time.Second

// catchUpIdle ends catching up when nothing arrives for this long, should
// the server's keepalive not come.
const catchUpIdle = time.Second

// catalogUpdate is a new discovery result; startup lists views whose earlier
// changes were not streamed (new views, views over newly published tables).
type catalogUpdate struct {
	catalog *catalog.Catalog
	startup []string
	// barrier: the startup refreshes wait for these transactions (see
	// refresher.Writers).
	barrier []uint64
	// repartitioned: views whose partitioned sources gained or lost
	// partitions, with those sources.
	repartitioned map[string][]string
	// discovered: the catalog shows every partition change before it.
	discovered pglogrepl.LSN
}

type result struct {
	view    string
	outcome refresher.Outcome
}

// errServerGoingAway means a refresh found the server shutting down or
// refusing connections: the stream must let go of the slot (a shutting-down
// server waits for it), and the daemon reconnect once the server is back.
var errServerGoingAway = errors.New("the server is going away")

// scheduler owns every piece of mutable state of a running daemon: the
// catalog, the debouncer, the pending work per view and the watermark. One
// goroutine runs it; everything reaches it through channels.
type scheduler struct {
	cfg     config.Config
	logger  *slog.Logger
	pool    *pgxpool.Pool
	confirm func(pglogrepl.LSN)
	events  eventSink
	metrics *metrics.Metrics

	inbox    chan streamed
	catalogs chan catalogUpdate
	jobs     chan refresher.Request
	results  chan result
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
	debouncer *debounce.Debouncer
	watermark *replication.Watermark
	pending   map[string]*work
	running   map[string]*work
	// txns logs the transactions pending and running work covers.
	txns      *refresher.TxnLog
	free      int
	ancestors *lru.Cache[uint32, []uint32] // relations discovery did not see
	// walChanges caches mvrefresher_wal_changes_total per source: looking a
	// label up for every change was a tenth of the daemon's CPU under
	// pgbench.
	walChanges map[string]prometheus.Counter
	warnedPlan map[string]bool
	churn      *churn
	// lastRefresh is each view's last refresh event, for the endpoints.
	lastRefresh map[string]*events.Refresh
	// targets are the views' effective staleness targets, planned from
	// their refreshes' durations; hasTargets: any view has one.
	durations  durations
	targets    map[string]schedule.Target
	hasTargets bool
	// unmeetable: the views whose plan leaves no time, warned about.
	unmeetable map[string]bool
	// lag is how long commits took to arrive lately; planLag is what the
	// plans assume.
	lag     lagWindow
	planLag time.Duration
	// startupTotal and startupDone count the startup refreshes, for the
	// progress the log shows.
	startupTotal, startupDone int
	// pendingViews is len(pending), for the slot monitor's goroutine.
	pendingViews atomic.Int64
	// behind: the stream is catching up on a backlog, since behindSince;
	// lastReceived is when the stream last handed something over.
	behind       bool
	behindSince  time.Time
	lastReceived time.Time
	// clockSkew is how far the daemon's clock is ahead of the server's
	// (measureClockSkew): Commit moves commit times to the daemon's clock.
	clockSkew time.Duration
	// gone is set when a refresh found the server going away: run ends.
	gone error
	// now is the debouncer's clock, moved once per loop iteration: the
	// changes of one batch (a transaction touching a base's sources and its
	// dependent's, the startup requests) are equally old, so the base goes
	// first.
	now time.Time
}

func newScheduler(cfg config.Config, logger *slog.Logger, m *metrics.Metrics, pool *pgxpool.Pool, cat *catalog.Catalog, findings []catalog.Finding, start pglogrepl.LSN, confirm func(pglogrepl.LSN), sink eventSink) *scheduler {
	ancestors, _ := lru.New[uint32, []uint32](10_000) // cannot fail for a positive size
	s := &scheduler{
		cfg:         cfg,
		logger:      logger,
		pool:        pool,
		confirm:     confirm,
		events:      sink,
		metrics:     m,
		inbox:       make(chan streamed, 4096),
		catalogs:    make(chan catalogUpdate),
		jobs:        make(chan refresher.Request, cfg.Workers),
		results:     make(chan result, cfg.Workers),
		watermark:   replication.NewWatermark(start),
		pending:     map[string]*work{},
		running:     map[string]*work{},
		txns:        refresher.NewTxnLog(),
		free:        cfg.Workers,
		ancestors:   ancestors,
		walChanges:  map[string]prometheus.Counter{},
		warnedPlan:  map[string]bool{},
		churn:       newChurn(findings),
		lastRefresh: map[string]*events.Refresh{},
		durations:   durations{},
		now:         time.Now(),
	}
	s.rediscover = func() {}
	s.debouncer = debounce.New(func() time.Time { return s.now })
	s.setCatalog(cat)
	return s
}

// Commit and Progress make the scheduler the stream's handler.
func (s *scheduler) Commit(ctx context.Context, tx *replication.Transaction) error {
	tx.CommitTime = onDaemonClock(tx.CommitTime, s.clockSkew)
	return s.send(ctx, streamed{tx: tx, newRels: s.resolveNewRelations(ctx, tx)})
}

func (s *scheduler) Progress(ctx context.Context, lsn pglogrepl.LSN) error {
	return s.send(ctx, streamed{progress: lsn})
}

func (s *scheduler) send(ctx context.Context, item streamed) error {
	select {
	case s.inbox <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run schedules refreshes until ctx ends, then waits up to the shutdown
// timeout for running refreshes and cancels the rest through cancelWork. It
// returns early, with errServerGoingAway, when the server is shutting down.
func (s *scheduler) run(ctx context.Context, cancelWork context.CancelFunc) error {
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
		if s.behind && (!ok || s.lastReceived.Add(catchUpIdle).Before(at)) {
			at, ok = s.lastReceived.Add(catchUpIdle), true
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
			cancelWork()
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
			s.replanForLag()
		case <-wake:
			s.now = time.Now()
			if s.behind && time.Since(s.lastReceived) >= catchUpIdle {
				s.setBehind(false)
			}
		}
	}
}

// drainInbox takes what else the stream has queued, so that a backlog is
// routed in batches instead of rescheduling every view after every
// transaction.
func (s *scheduler) drainInbox() {
	for range cap(s.inbox) {
		select {
		case item := <-s.inbox:
			s.receive(item)
		default:
			return
		}
	}
}

func (s *scheduler) receive(item streamed) {
	s.lastReceived = time.Now()
	if tx := item.tx; tx != nil {
		s.route(tx, item.newRels)
		s.watermark.Seen(tx.EndLSN)
		lag := s.lastReceived.Sub(tx.CommitTime)
		s.setBehind(lag > catchUpLag)
		if !s.behind && !tx.CommitTime.IsZero() {
			s.lag.observe(max(lag, 0), s.lastReceived)
		}
		return
	}
	s.watermark.Seen(item.progress)
	s.setBehind(false)
}

// setBehind notes whether the stream is catching up on a backlog: a
// refresh in the middle of one is stale at once and takes CPU from the
// server sending the rest.
func (s *scheduler) setBehind(behind bool) {
	if behind == s.behind {
		return
	}
	s.behind = behind
	s.debouncer.SetBehind(behind)
	now := time.Now()
	if behind {
		s.behindSince = now
		s.logger.Debug("catching up on a backlog: views wait for the stream to catch up, or for their max_wait")
		return
	}
	// A short lag comes and goes; only a real backlog is worth a line.
	level := slog.LevelDebug
	if now.Sub(s.behindSince) >= 5*time.Second {
		level = slog.LevelInfo
	}
	s.logger.Log(context.Background(), level, "caught up on a backlog", "behind_for", now.Sub(s.behindSince).Round(time.Millisecond).String())
}

// dispatch starts every due view a free worker can take.
func (s *scheduler) dispatch() {
	if s.free == 0 && !s.hasTargets {
		return
	}
	due := s.debouncer.Due()
	for i, name := range due {
		if s.free == 0 {
			for _, n := range due[i:] {
				if w := s.pending[n]; w != nil {
					w.waitedForWorker = true
				}
			}
			return
		}
		if !s.debouncer.Startable(name) {
			if w := s.pending[name]; w != nil {
				w.waitedForRelated = true
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
				w.release(s.watermark)
			}
			s.debouncer.Start(name)
			s.debouncer.Finish(name)
			continue
		}
		s.debouncer.Start(name)
		s.running[name] = w
		s.free--
		w.attempt++
		w.planned = s.durations.estimate(name)
		if w.lsn == 0 {
			w.lsn = s.watermark.SeenLSN()
		}
		s.settleTxns(w)
		s.jobs <- refresher.Request{View: view, Mode: refreshMode(s.cfg, name), LSN: w.lsn,
			Dependents: withDependents(s.catalog, []string{name})[1:],
			Txns:       s.txnSpan(w), TxnsFrom: w.txns.first, Deferrable: !w.unconditional, Barrier: w.barrier.xids}
	}
}

// work runs the refreshes dispatch hands out until run has returned (and
// closed jobs); the daemon runs one per worker.
func (s *scheduler) work(ctx context.Context, refresh func(context.Context, refresher.Request) refresher.Outcome) {
	for req := range s.jobs {
		s.results <- result{view: req.View.Name, outcome: refresh(ctx, req)}
	}
}

// pendingWork returns the view's accumulating work, creating it.
func (s *scheduler) pendingWork(view string) *work {
	w := s.pending[view]
	if w == nil {
		w = &work{}
		s.pending[view] = w
	}
	return w
}

func (s *scheduler) finish(r result) {
	w := s.running[r.view]
	delete(s.running, r.view)
	s.free++
	view := s.catalog.Views[r.view]
	out := r.outcome
	defer s.pruneTxns(out.VisibleBefore)
	if out.Deferred {
		// Nothing ran: min_interval must not put off the visibility retry.
		s.debouncer.PutOff(r.view)
		if view == nil {
			w.release(s.watermark) // dropped meanwhile
			return
		}
		w.attempt-- // nothing ran
		if out.WaitsFor != 0 {
			s.awaitBarrier(r.view, w, out.WaitsFor)
			return
		}
		s.awaitVisibility(r.view, w, out.UnseenTxn)
		return
	}
	s.debouncer.Finish(r.view)
	// Reported once the outcome is applied: the event carries the view's
	// fresh-through position after it.
	defer s.report(r.view, view, w, out)
	switch {
	case out.Err == nil:
		s.observeDuration(r.view, out.FinishedAt.Sub(out.StartedAt))
		if out.Unseen != 0 && view != nil {
			// What the snapshot did not see is owed again, from the oldest
			// unseen transaction on; the cascade carries only what it saw.
			unseen := &work{reason: events.ReasonChange, firstChangeAt: w.firstChangeAt,
				lsn: w.lsn, txns: txnRange{out.Unseen, w.txns.last}, unseenSince: w.unseenSince, unseenTries: w.unseenTries}
			unseen.holdAt(s.watermark, out.LSN) // the oldest unseen commit
			unseen.owe(out.LSN)
			s.awaitVisibility(r.view, unseen, out.UnseenTxn)
			w.lsn = out.LSN
		}
		// Dependents take over the hold before it is released, so the slot
		// cannot pass the change before the cascade is done too.
		for _, dep := range s.catalog.Dependents(r.view) {
			s.cascade(dep, r.view, w)
		}
		w.release(s.watermark)
	case view == nil:
		w.release(s.watermark) // dropped while it ran
	default:
		switch refresher.SQLState(out.Err) {
		case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow:
			s.gone = fmt.Errorf("%w: %w", errServerGoingAway, out.Err)
		}
		// A failure in the log releases the slot: a persistently failing view
		// must not retain WAL. A failure that could not be recorded (the
		// database is unreachable) keeps its hold. Either way the view is
		// retried with backoff, and sooner on its next change.
		if out.Recorded {
			w.release(s.watermark)
		}
		s.pendingWork(r.view).absorb(s.watermark, w)
		s.debouncer.Retry(r.view, s.now.Add(retryBackoff(w.attempt)))
	}
}

// Retry backoff after failed refreshes: 1s, 2s, 4s, ... up to 5 minutes,
// with jitter so that views failing together do not retry together.
const (
	retryBackoffBase = time.Second
	retryBackoffMax  = 5 * time.Minute
)

func retryBackoff(attempt int) time.Duration {
	d := retryBackoffMax
	if attempt >= 1 && attempt < 20 {
		d = min(retryBackoffBase<<(attempt-1), retryBackoffMax)
	}
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// Visibility backoff: a commit the server sent but other sessions do not
// see yet is normally visible within a millisecond (a synchronous standby's
// reply); one that is not waits for a standby that lags or is down.
const (
	visibilityBackoffBase = 10 * time.Millisecond
	visibilityBackoffMax  = time.Second
	visibilityNoteAfter   = time.Second
	visibilityWarnAfter   = 10 * time.Second
)

// awaitVisibility makes unseen, work (holding the slot before its commits)
// whose commits a refresh's snapshot did not see, oldest the first of
// them, pending again, and retries it with backoff. The wait takes no
// worker and holds no snapshot: each try is a new transaction that either
// sees the commits or puts itself off again.
func (s *scheduler) awaitVisibility(name string, unseen *work, oldest refresher.Txn) {
	if unseen.unseenSince.IsZero() {
		unseen.unseenSince = s.now
	}
	unseen.unseenTries++
	waited := s.now.Sub(unseen.unseenSince)
	attrs := []any{"view", name, "xid", oldest.Xid, "commit_lsn", oldest.CommitLSN.String(),
		"waited", waited.Round(time.Millisecond).String()}
	// A healthy synchronous standby makes a commit visible within a
	// millisecond or so: worth a line only once the wait is noticeable.
	switch {
	case unseen.unseenTries == 1:
		s.logger.Debug("a commit to refresh is not visible yet: waiting for it", attrs...)
	case waited >= visibilityWarnAfter && !unseen.unseenWarned:
		unseen.unseenWarned = true
		s.logger.Warn("a commit to refresh is still not visible: the refresh waits for it and the slot holds its WAL (is a synchronous standby down?)", attrs...)
	case waited >= visibilityNoteAfter && !unseen.unseenNoted:
		unseen.unseenNoted = true
		s.logger.Info("a commit to refresh is not visible yet (a synchronous standby has not confirmed it?): waiting for it", attrs...)
	}
	s.metrics.VisibilityWaits.WithLabelValues(name).Inc()
	p := s.pendingWork(name)
	p.absorb(s.watermark, unseen)
	delay := visibilityBackoffMax
	if unseen.unseenTries < 10 {
		delay = min(visibilityBackoffBase<<(unseen.unseenTries-1), visibilityBackoffMax)
	}
	s.debouncer.Retry(name, s.now.Add(delay))
}

func (s *scheduler) cascade(dep, base string, w *work) {
	if s.catalog.Views[dep] == nil {
		return
	}
	d := s.pendingWork(dep)
	d.raise(events.ReasonCascade)
	d.changes += w.changes
	d.noteChange(w.firstChangeAt)
	d.lsn = max(d.lsn, w.lsn)
	d.addSource(base)
	d.oweFrom(w)
	d.baseAttempts = max(d.baseAttempts, w.attempt, w.baseAttempts)
	d.unconditional = true
	if w.hold != 0 {
		d.holdAt(s.watermark, w.holdLSN)
	}
	s.debouncer.Request(dep)
}

// report logs and publishes the outcome of a refresh.
func (s *scheduler) report(name string, view *catalog.View, w *work, out refresher.Outcome) {
	e := events.Refresh{
		View:          name,
		Status:        events.StatusOK,
		Reason:        w.reason,
		Concurrently:  out.Concurrently,
		StartedAt:     out.StartedAt.UTC(),
		FinishedAt:    out.FinishedAt.UTC(),
		DurationMS:    ms(out.FinishedAt.Sub(out.StartedAt)),
		LSN:           out.LSN.String(),
		Sources:       w.sources,
		Changes:       w.changes,
		FirstChangeAt: w.firstChangeAt.UTC(),
		RowsInserted:  out.RowsInserted,
		RowsDeleted:   out.RowsDeleted,
		Attempt:       w.attempt,
	}
	if e.Sources == nil {
		e.Sources = []string{}
	}
	if through, ok := s.freshThrough(name); ok && view != nil {
		e.FreshThrough = through.String()
	}
	if !w.firstChangeAt.IsZero() {
		e.StalenessMS = ms(out.FinishedAt.Sub(w.firstChangeAt))
	}
	attrs := []any{"view", name, "reason", e.Reason, "duration_ms", e.DurationMS, "concurrently", e.Concurrently}
	if out.Err != nil {
		e.Status, e.Error = events.StatusFailed, out.Err.Error()
		s.logger.Error("refresh failed", append(attrs, "attempt", w.attempt, "recorded", out.Recorded, "error", out.Err)...)
	} else {
		if out.RowsInserted != nil {
			attrs = append(attrs, "rows_inserted", *out.RowsInserted, "rows_deleted", *out.RowsDeleted)
		}
		if e.Reason == events.ReasonStartup && s.startupTotal > 0 {
			s.startupDone++
			attrs = append(attrs, "startup", fmt.Sprintf("%d/%d", s.startupDone, s.startupTotal))
		}
		s.logger.Info("refreshed", append(attrs, "changes", e.Changes, "staleness_ms", e.StalenessMS)...)
		if out.PlainReason != "" && !s.warnedPlan[name] {
			s.warnedPlan[name] = true
			s.logger.Warn("refreshing without CONCURRENTLY: readers wait for every refresh", "view", name, "why", out.PlainReason)
		}
	}
	s.metrics.Refreshes.WithLabelValues(name, string(e.Status)).Inc()
	if out.Err == nil {
		s.checkTarget(name, w, out)
		s.metrics.RefreshDuration.WithLabelValues(name).Observe(out.FinishedAt.Sub(out.StartedAt).Seconds())
		if out.RowsInserted != nil {
			s.metrics.RowsChanged.WithLabelValues(name, "inserted").Add(float64(*out.RowsInserted))
			s.metrics.RowsChanged.WithLabelValues(name, "deleted").Add(float64(*out.RowsDeleted))
			ratio, warn := s.churn.observe(name, *out.RowsInserted, *out.RowsDeleted, out.Rows)
			s.metrics.ChurnRatio.WithLabelValues(name).Set(ratio)
			if warn {
				s.logger.Warn("every concurrent refresh rewrites (nearly) every row: CONCURRENTLY saves nothing for this view",
					"view", name, "ratio", ratio, "rows", out.Rows, "likely_cause", s.churn.cause(name))
			}
		}
	}
	if view != nil {
		s.lastRefresh[name] = &e
		s.events.PublishRefresh(view.Schema, view.Relname, e)
	}
}

// updateGauges refreshes the per-view staleness gauges, which grow with time.
func (s *scheduler) updateGauges() {
	now := time.Now()
	for name := range s.catalog.Views {
		var oldest time.Time
		for _, w := range []*work{s.pending[name], s.running[name]} {
			if w != nil && !w.firstChangeAt.IsZero() && (oldest.IsZero() || w.firstChangeAt.Before(oldest)) {
				oldest = w.firstChangeAt
			}
		}
		staleness := 0.0
		if !oldest.IsZero() {
			staleness = now.Sub(oldest).Seconds()
		}
		s.metrics.ViewStaleness.WithLabelValues(name).Set(staleness)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
