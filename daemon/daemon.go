// Package daemon runs mvrefresher: it connects, prepares what streaming
// starts from (the refresh log, the catalog, the publication, the slot),
// runs the stream, the scheduler, the refresh workers, discovery and the
// slot monitor under one errgroup, reconnects or stands by when that ends,
// and serves the HTTP endpoints.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// Daemon is one running mvrefresher.
type Daemon struct {
	cfg        config.Config
	logger     *slog.Logger
	refreshLog refresher.Log
	stream     atomic.Pointer[replication.Stream]
	standby    atomic.Bool
	metrics    *metrics.Metrics
	// queries reach the scheduler of the attempt streaming now.
	queries *schedule.Queries
	// slotUndecodable: the last attempt's stream failed on WAL written
	// while the publication was dropped; owned by Run.
	slotUndecodable bool
}

// New checks nothing and connects to nothing: Run does.
func New(cfg config.Config, logger *slog.Logger) *Daemon {
	d := &Daemon{cfg: cfg, logger: logger, queries: schedule.NewQueries(),
		refreshLog: refresher.NewLog(cfg.RefreshLogTable.Schema, cfg.RefreshLogTable.Name)}
	d.metrics = metrics.New(d.Ready, d.Standby)
	return d
}

// MetricsHandler serves the daemon's Prometheus metrics.
func (d *Daemon) MetricsHandler() http.Handler { return d.metrics.Handler() }

// Standby reports whether another instance holds the slot and this one
// waits to take over.
func (d *Daemon) Standby() bool { return d.standby.Load() }

// Ready reports whether the daemon is streaming from its slot.
func (d *Daemon) Ready() bool {
	s := d.stream.Load()
	return s != nil && s.Streaming()
}

// runOnce connects, prepares (log table, catalog, publication, slot) and
// then streams and refreshes until ctx ends or something fails.
func (d *Daemon) runOnce(ctx context.Context, sink eventSink) error {
	pool, err := d.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	slotPool, src, err := replication.OpenSource(ctx, pool, d.cfg.ReplicationURL, config.RedactURL(d.cfg.ReplicationURL), d.logger)
	if err != nil {
		return err
	}
	defer replication.CloseSource(slotPool, pool)
	if err := d.checkServer(ctx, pool, slotPool); err != nil {
		return err
	}
	// Connect for replication before creating anything, so that a role
	// without REPLICATION fails before the publication exists.
	stream, err := replication.Connect(ctx, d.cfg.StreamURL(), d.cfg.Slot, d.cfg.Publication, d.logger.With("component", "replication"))
	if err != nil {
		return err
	}
	if src.Standby {
		stream.DecodeOnStandbyOf(pool)
	}
	stream.SetBatchDelay(readBatchDelay(d.cfg))
	// Whatever stops this attempt, tell the server what is done.
	defer func() {
		if err := stream.Close(context.WithoutCancel(ctx)); err != nil && ctx.Err() != nil {
			d.logger.Warn("close replication connection", "error", err)
		}
	}()
	start, err := d.prepare(ctx, pool, slotPool, src, stream)
	if err != nil {
		return err
	}

	d.standby.Store(false)
	// Discovery and the checks parse every view's rule: tens of megabytes
	// for thousands of views, garbage now. Hand it back to the OS at once
	// rather than whenever the scavenger gets to it: a sidecar's memory
	// limit is sized for its steady state.
	debug.FreeOSMemory()
	stream.Confirm(start.slot.Start)
	confirm := stream.Confirm
	var gate *replication.ReplayGate
	if src.Standby {
		gate = replication.NewReplayGate(pool, slotPool, start.wal, stream, d.logger.With("component", "replay_gate"))
		confirm = gate.Confirm
	}
	skew, err := d.clockSkew(ctx, pool)
	if err != nil {
		return err
	}
	discoverNow := make(chan struct{}, 1)
	sched := schedule.New(schedule.Options{
		Config: d.cfg, Logger: d.logger.With("component", "scheduler"), Metrics: d.metrics,
		Catalog: start.catalog, Findings: start.findings, Maintenance: start.maintenance,
		Start: start.slot.Start, Confirm: confirm, Events: sink, Queries: d.queries, WAL: start.wal,
		PartitionAncestors: func(ctx context.Context, oid uint32) ([]uint32, error) {
			return catalog.PartitionAncestors(ctx, pool, oid)
		},
		Discovered: start.discovered,
		Rediscover: func() {
			select {
			case discoverNow <- struct{}{}:
			default: // one is asked for already
			}
		},
		ClockSkew: skew, Durations: start.durations, IncrementalDurations: start.incremental, Startup: start.startup, Barrier: start.barrier,
	})
	stream.SelectImages(sched.WantsImages)
	d.stream.Store(stream)
	if err := d.runStages(ctx, pool, slotPool, stream, gate, sched, start.catalog, start.maintenance, discoverNow, sink); err != nil {
		return err
	}
	d.logger.Info("stopped")
	return nil
}

// openPool connects the pool the refreshes, discovery and lookups use.
func (d *Daemon) openPool(ctx context.Context) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(d.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database_url: %w", err)
	}
	// One connection per worker, plus discovery and lookups.
	poolCfg.MaxConns = int32(d.cfg.Workers + 2)
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "mvrefresher"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", config.RedactURL(d.cfg.DatabaseURL), err)
	}
	return pool, nil
}

// checkServer fails for a server the daemon cannot use, the views: entries
// naming no view, and (ErrSlotInUse) a slot another instance streams from:
// a standby does nothing else until the active instance lets go.
func (d *Daemon) checkServer(ctx context.Context, pool, slotPool *pgxpool.Pool) error {
	if err := replication.CheckWALLevel(ctx, pool); err != nil {
		return err
	}
	if err := replication.CheckSlotFree(ctx, slotPool, d.cfg.Slot); err != nil {
		return err
	}
	problems, err := catalog.CheckViewKeys(ctx, pool, slices.Collect(maps.Keys(d.cfg.Views)), d.cfg.Schemas)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range problems {
		errs = append(errs, errors.New(p.Message))
	}
	return errors.Join(errs...)
}

// startState is what streaming starts from.
type startState struct {
	catalog  *catalog.Catalog
	findings []catalog.Finding
	slot     replication.SlotState
	// startup lists the views owing a refresh the WAL will not bring, and
	// barrier the transactions their refreshes wait for: a crash may have
	// come between a table joining the publication and its readers'
	// refreshes, so every start waits for the transactions writing to a
	// source when it reads the debts.
	startup []string
	barrier []uint64
	// discovered: the catalog shows every partition change before it.
	discovered pglogrepl.LSN
	wal        replication.WALGeometry
	// durations are the views' last refresh durations in the log: of
	// plain refreshes and full recomputes, and incremental of incremental
	// maintenances (see Options.Durations).
	durations, incremental map[string]time.Duration
	// maintenance has the views maintained incrementally.
	maintenance map[string]*refresher.Maintenance
}

// prepare creates what is missing (the log table, the publication, the
// slot) and reads what streaming starts from.
func (d *Daemon) prepare(ctx context.Context, pool, slotPool *pgxpool.Pool, src replication.Source, stream *replication.Stream) (startState, error) {
	if err := d.refreshLog.Ensure(ctx, pool); err != nil {
		return startState{}, err
	}
	wal, err := replication.ReadWALGeometry(ctx, pool)
	if err != nil {
		return startState{}, err
	}
	if err := d.convertViews(ctx, pool); err != nil {
		return startState{}, err
	}
	cat, _, discovered, err := d.discover(ctx, pool, nil)
	if err != nil {
		return startState{}, err
	}
	maintenance, err := d.maintenancePlans(ctx, pool, cat)
	if err != nil {
		return startState{}, err
	}
	d.logCatalog(cat)
	d.exportCatalog(cat)
	findings, err := d.logFindings(ctx, pool, cat)
	if err != nil {
		return startState{}, err
	}
	slot, err := d.ensureSlot(ctx, pool, slotPool, stream, cat)
	if err != nil {
		return startState{}, err
	}
	if slot.Created && src.Standby && src.PrimarySlot != "" {
		if err := replication.AwaitCatalogFeedback(ctx, pool, slotPool, d.cfg.Slot, src.PrimarySlot, d.logger); err != nil {
			return startState{}, err
		}
	}
	// Everything owed is in the log, whatever this start or an earlier one
	// that crashed found: a new slot, tables newly published, failures.
	startup, err := d.refreshLog.Owed(ctx, pool, cat.Names())
	if err != nil {
		return startState{}, err
	}
	var sources []uint32
	for _, t := range cat.PublishedTables() {
		sources = append(sources, t.OID)
	}
	barrier, err := refresher.Writers(ctx, pool, sources)
	if err != nil {
		return startState{}, err
	}
	rows, err := d.refreshLog.Rows(ctx, pool, cat.Names())
	if err != nil {
		return startState{}, err
	}
	durations, incremental := map[string]time.Duration{}, map[string]time.Duration{}
	for name, r := range rows {
		d := r.Duration()
		switch {
		case d <= 0 || r.Status != "ok":
		case r.Incremental() && maintenance[name] != nil:
			incremental[name] = d
		case r.Incremental(): // turned off since: a refresh costs a full recompute's time
		default:
			durations[name] = d
		}
	}
	errs, warns := 0, 0
	for _, f := range findings {
		if f.Severity == catalog.SeverityError {
			errs++
		} else {
			warns++
		}
	}
	d.logger.Info("starting", "database", replication.DatabaseName(d.cfg.DatabaseURL), "decoding_on", src.DecodingOn(d.cfg.DatabaseURL, d.cfg.ReplicationURL),
		"slot", d.cfg.Slot, "slot_created", slot.Created,
		"start_lsn", slot.Start.String(), "views", cat.Names(), "sources", len(cat.PublishedTables()),
		"check_errors", errs, "check_warnings", warns, "startup_refreshes", len(startup))
	return startState{catalog: cat, findings: findings, slot: slot, startup: startup, barrier: barrier, discovered: discovered, wal: wal, durations: durations, incremental: incremental,
		maintenance: maintenance}, nil
}

// ensureSlot finds or creates the slot, and recreates one the server
// invalidated or that cannot decode its WAL (on_slot_lost: recreate).
// Every view is marked owed before a slot is created: nothing before it
// will be streamed.
func (d *Daemon) ensureSlot(ctx context.Context, pool, slotPool *pgxpool.Pool, stream *replication.Stream, cat *catalog.Catalog) (replication.SlotState, error) {
	markAllOwed := func() error { return d.markAllOwed(ctx, pool, cat) }
	slot, err := stream.EnsureSlot(ctx, slotPool, markAllOwed)
	switch {
	case errors.Is(err, replication.ErrSlotLost) && d.cfg.OnSlotLost == config.OnSlotLostRecreate:
		d.logger.Error("the replication slot was invalidated by the server: recreating it and refreshing every view once, which covers the changes it can no longer stream",
			"slot", d.cfg.Slot, "error", err)
		slot, err = stream.RecreateSlot(ctx, slotPool, markAllOwed, true)
	case err == nil && d.slotUndecodable && !slot.Created:
		d.logger.Error("the slot cannot decode WAL written while the publication was dropped: recreating it and refreshing every view once, which covers the changes it cannot decode",
			"slot", d.cfg.Slot, "publication", d.cfg.Publication)
		slot, err = stream.RecreateSlot(ctx, slotPool, markAllOwed, false)
	}
	if err != nil {
		return replication.SlotState{}, err
	}
	d.slotUndecodable = false
	return slot, nil
}

// runStages runs the stream, the scheduler, the workers and discovery until
// ctx ends or one of them fails.
func (d *Daemon) runStages(ctx context.Context, pool, slotPool *pgxpool.Pool, stream *replication.Stream, gate *replication.ReplayGate, sched *schedule.Scheduler, cat *catalog.Catalog, plans map[string]*refresher.Maintenance, discoverNow <-chan struct{}, sink eventSink) error {
	g, gctx := errgroup.WithContext(ctx)
	refr := refresher.New(pool, d.refreshLog, d.cfg.LockTimeout, d.cfg.StatementTimeout)

	g.Go(func() error {
		err := stream.Run(gctx, sched)
		if ctx.Err() == nil {
			d.letGo(ctx, stream)
		}
		return err
	})
	g.Go(func() error { d.discoverLoop(gctx, pool, sched, cat, plans, discoverNow); return nil })
	g.Go(func() error { d.monitorSlot(gctx, slotPool, sched, sink); return nil })
	if gate != nil {
		g.Go(func() error { return gate.Run(gctx) })
	}
	var workers errgroup.Group
	for range d.cfg.Workers {
		workers.Go(func() error { sched.Work(refr.Refresh); return nil })
	}
	g.Go(func() error { return sched.Run(gctx) })
	err := g.Wait()
	_ = workers.Wait()
	if ctx.Err() != nil {
		return nil // the caller stopped us: a graceful stop, whatever the stages said
	}
	return err
}

// letGo closes the stream of an attempt that ends for any reason but a
// graceful stop: the server ended the stream or is shutting down, the
// connection failed, or another stage did. The rest of the attempt waits up
// to shutdown_timeout for the running refreshes, which on a standby's
// healthy primary can take that long, and a server shutting down waits for
// its walsender until the stream lets go. What those refreshes finish is
// not confirmed: the next attempt streams it again from the slot, and
// refreshes it once more at most. A graceful stop keeps the stream until
// they are done, so that the slot confirms them.
func (d *Daemon) letGo(ctx context.Context, stream *replication.Stream) {
	if err := stream.Close(context.WithoutCancel(ctx)); err != nil {
		d.logger.Debug("close replication connection", "error", err)
	}
}

func (d *Daemon) logCatalog(cat *catalog.Catalog) {
	for _, name := range cat.Names() {
		v := cat.Views[name]
		d.logger.Debug("managing view", "view", name, "sources", v.SourceNames(), "depends_on", v.Bases)
	}
}

// logFindings runs the checks of `mvrefresher check` and logs what they find.
func (d *Daemon) logFindings(ctx context.Context, pool *pgxpool.Pool, cat *catalog.Catalog) ([]catalog.Finding, error) {
	findings, err := catalog.Check(ctx, pool, cat, func(v string) bool { return schedule.RefreshMode(d.cfg, v) == refresher.ModeConcurrently },
		func(v string) bool { return d.cfg.ViewSettings(v).RefreshEvery > 0 })
	if err != nil {
		return nil, err
	}
	for _, f := range findings {
		if f.Severity == catalog.SeverityError {
			d.logger.Error("view problem", "view", f.View, "code", f.Code, "problem", f.Message)
		} else {
			d.logger.Warn("view problem", "view", f.View, "code", f.Code, "problem", f.Message)
		}
	}
	return findings, nil
}

// readBatchDelay is how long the stream's reads wait for more of a flowing
// stream: a hundredth of the shortest debounce (the stream clamps it to
// 2-20 ms), so that batching costs a change's refresh at most 1% more wait.
func readBatchDelay(cfg config.Config) time.Duration {
	shortest := cfg.Debounce
	for _, v := range cfg.Views {
		if v.Debounce != nil {
			shortest = min(shortest, *v.Debounce)
		}
	}
	return shortest / 100
}
