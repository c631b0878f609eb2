package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// discoverOptions has catalog.Discover find the views cfg manages, never
// taking the refresh log for a source.
func discoverOptions(cfg config.Config, log refresher.Log) catalog.DiscoverOptions {
	return catalog.DiscoverOptions{
		Schemas: cfg.Schemas,
		Enabled: func(name string) bool { return cfg.ViewSettings(name).Enabled },
		Log:     log,
	}
}

// discoverLoop re-reads the catalog every discovery_interval so that new and
// dropped views and new source tables are picked up without a restart. The
// publication is synced before the scheduler hears of a new source, and the
// startup refresh it triggers waits for the transactions running then, so
// it cannot miss a change.
//
// A wait for a view whose sources change outside the stream asks for a
// discovery through now: the view is fresh through nothing past the last
// one.
func (d *Daemon) discoverLoop(ctx context.Context, pool *pgxpool.Pool, sched *schedule.Scheduler, prev *catalog.Catalog, prevPlans map[string]*refresher.Maintenance, now <-chan struct{}) {
	ticker := time.NewTicker(d.cfg.DiscoveryInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-now:
		}
		cat, added, through, err := d.discover(ctx, pool, prev)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d.logger.Warn("rediscover views", "error", err)
			continue
		}
		startup := newViews(cat, prev)
		for _, name := range startup {
			d.logger.Info("new view", "view", name, "sources", cat.Views[name].SourceNames())
		}
		for _, v := range cat.WithDependents(readersOf(cat, added)...) {
			if !slices.Contains(startup, v) {
				startup = append(startup, v)
			}
		}
		var barrier []uint64
		if len(added) > 0 {
			// After the commit that published them: what writes to them now
			// may have written before, unstreamed. The next discovery would
			// not see them added again, so no giving up here.
			oids := make([]uint32, len(added))
			for i, t := range added {
				oids[i] = t.OID
			}
			for {
				if barrier, err = refresher.Writers(ctx, pool, oids); err == nil {
					break
				}
				d.logger.Warn("rediscover views: tables joined the publication", "error", err)
				if !wait.For(ctx, time.Second) {
					return
				}
			}
		}
		repartitioned := d.repartitioned(ctx, pool, cat, prev)
		if err := d.markRepartitioned(ctx, pool, cat, repartitioned); err != nil {
			// The scheduler still refreshes them; only a crash before that
			// would lose it.
			d.logger.Warn("record owed refreshes after partition changes", "error", err)
		}
		maintenance, err := d.maintenancePlans(ctx, pool, cat)
		if err != nil {
			return // ctx ended
		}
		for _, name := range redefined(maintenance, prevPlans) {
			if !slices.Contains(startup, name) {
				d.logger.Warn("the definition of a view maintained incrementally changed: recomputing it whole", "view", name)
				startup = append(startup, name)
			}
		}
		d.exportCatalog(cat)
		update := schedule.CatalogUpdate{Catalog: cat, Maintenance: maintenance, Startup: startup, Barrier: barrier, Repartitioned: repartitioned, Discovered: through}
		if sched.UpdateCatalog(ctx, update) != nil {
			return
		}
		prev, prevPlans = cat, maintenance
	}
}

// redefined lists the maintained views whose definition differs from the
// one their table was maintained by: its rows were computed from the old
// one, and only a full recompute replaces them all.
func redefined(plans, prev map[string]*refresher.Maintenance) []string {
	var out []string
	for name, m := range plans {
		if old := prev[name]; m.Plan != nil && old != nil && old.Plan != nil && m.Plan.Text != old.Plan.Text {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// repartitioned lists, per view, the partitioned sources whose partitions
// changed in a way the WAL did not show: a partition detached or dropped, or
// one attached with rows in it. A partition created empty (CREATE TABLE ...
// PARTITION OF) changes nothing, and rows written to it since are streamed.
// When the partitions cannot be read, they count as changed: a spurious
// refresh is better than a lost one.
func (d *Daemon) repartitioned(ctx context.Context, pool *pgxpool.Pool, cat, prev *catalog.Catalog) map[string][]string {
	out := map[string][]string{}
	for _, pc := range cat.PartitionChanges(prev) {
		changed := len(pc.Removed) > 0
		if !changed {
			filled, err := catalog.AnyRows(ctx, pool, pc.Added)
			if err != nil {
				d.logger.Warn("cannot tell whether new partitions hold rows: refreshing the readers", "table", pc.Table.Name, "error", err)
				filled = true
			}
			changed = filled
		}
		if !changed {
			continue
		}
		d.logger.Info("partitions attached, detached or dropped: refreshing the readers", "table", pc.Table.Name, "views", pc.Readers)
		for _, v := range pc.Readers {
			out[v] = append(out[v], pc.Table.Name)
		}
	}
	return out
}

// markRepartitioned notes in the refresh log that the views, and their
// dependents, owe a refresh the WAL will never ask for.
func (d *Daemon) markRepartitioned(ctx context.Context, pool *pgxpool.Pool, cat *catalog.Catalog, repartitioned map[string][]string) error {
	if len(repartitioned) == 0 {
		return nil
	}
	var views []string
	for v := range repartitioned {
		views = append(views, v)
	}
	views = cat.WithDependents(views...)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return d.refreshLog.MarkOwed(ctx, tx, views) })
}

// discover reads the catalog and syncs the publication with it. In the
// transaction that adds tables to the publication (or repairs it), the
// views reading them, the views new since prev (nil at start) and all their
// dependents are marked in the refresh log as owing a refresh.
//
// through is the WAL position read before the catalog: the catalog shows
// every partition attached, detached or dropped before it.
func (d *Daemon) discover(ctx context.Context, pool *pgxpool.Pool, prev *catalog.Catalog) (cat *catalog.Catalog, added []replication.Table, through pglogrepl.LSN, err error) {
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&through); err != nil {
		return nil, nil, 0, fmt.Errorf("discover views: read the WAL position: %w", err)
	}
	cat, err = catalog.Discover(ctx, pool, discoverOptions(d.cfg, d.refreshLog))
	if err != nil {
		return nil, nil, 0, err
	}
	var tables []replication.Table
	for _, t := range cat.PublishedTables() {
		tables = append(tables, replication.Table{OID: t.OID, Schema: t.Schema, Name: t.Relname})
	}
	var changed []replication.Table
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The marked log rows are locked from the mark to the commit: an
		// ALTER waiting for a busy table would hold up those views'
		// refreshes as they record themselves. Better to give up and try
		// again at the next discovery.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
			return fmt.Errorf("sync publication: %w", err)
		}
		var err error
		changed, err = replication.SyncPublication(ctx, tx, d.cfg.Publication, tables,
			func(changed []replication.Table) error {
				// A view managed again (enabled, or its source fixed) may
				// have a log row from before: its startup refresh must
				// survive a crash too. One statement, one lock order.
				return d.refreshLog.MarkOwed(ctx, tx, cat.WithDependents(append(readersOf(cat, changed), newViews(cat, prev)...)...))
			},
			func(msg string) { d.logger.Warn(msg) })
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return cat, changed, through, nil
}

// exportCatalog sets mvrefresher_views from cat, and has every managed
// view's failure, missed-target and visibility-wait series exist, at 0,
// from when it is managed: an alert or a panel on their rate needs a series
// to start from.
func (d *Daemon) exportCatalog(cat *catalog.Catalog) {
	unmanaged := map[string]int{}
	counted := map[catalog.Problem]bool{}
	for _, p := range cat.Excluded {
		// A view excluded for two sources' lack of replica identity is one
		// view without it.
		key := catalog.Problem{View: p.View, Code: p.Code}
		if !counted[key] {
			counted[key] = true
			unmanaged[p.Code]++
		}
	}
	d.metrics.SetViews(len(cat.Views), unmanaged)
	for name := range cat.Views {
		d.metrics.Refreshes.WithLabelValues(name, string(events.StatusOK))
		d.metrics.Refreshes.WithLabelValues(name, string(events.StatusFailed))
		d.metrics.TargetMissed.WithLabelValues(name)
		d.metrics.VisibilityWaits.WithLabelValues(name)
	}
}

// markAllOwed notes in the refresh log that every managed view owes a
// refresh: the slot is about to be created, and nothing before it will be
// streamed.
func (d *Daemon) markAllOwed(ctx context.Context, pool *pgxpool.Pool, cat *catalog.Catalog) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return d.refreshLog.MarkOwed(ctx, tx, cat.Names())
	})
}

// newViews lists the views of cat that prev did not manage, managed as
// another view (see catalog.View.Same), or saw populated when they are not
// now (REFRESH ... WITH NO DATA); none without prev.
func newViews(cat, prev *catalog.Catalog) []string {
	if prev == nil {
		return nil
	}
	var out []string
	for _, name := range cat.Names() {
		v := cat.Views[name]
		if old := prev.Views[name]; old == nil || !old.Same(v) || old.Populated && !v.Populated {
			out = append(out, name)
		}
	}
	return out
}

// readersOf lists the views reading tables.
func readersOf(cat *catalog.Catalog, tables []replication.Table) []string {
	var views []string
	for _, t := range tables {
		readers, _, _ := cat.Route(t.OID)
		views = append(views, readers...)
	}
	return views
}
