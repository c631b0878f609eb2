package daemon

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// discoverLoop re-reads the catalog every discovery_interval so that new and
// dropped views and new source tables are picked up without a restart. The
// publication is synced before the scheduler hears of a new source, and the
// startup refresh it triggers waits for the transactions running then, so
// it cannot miss a change.
func (d *Daemon) discoverLoop(ctx context.Context, pool *pgxpool.Pool, sched *scheduler, prev *catalog.Catalog) {
	ticker := time.NewTicker(d.cfg.DiscoveryInterval)
	defer ticker.Stop()
	busy := 0 // discoveries in a row that found views to mark being refreshed
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cat, added, err := d.discover(ctx, pool, prev)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, refresher.ErrRefreshRunning):
			// Usually gone at the next discovery; say so if it is not.
			if busy++; busy%6 == 0 {
				d.logger.Warn("rediscover views: refreshes of views to mark as owing a refresh keep running; new views, new sources and publication repairs wait",
					"attempts", busy)
			}
			continue
		case err != nil:
			d.logger.Warn("rediscover views", "error", err)
			continue
		}
		busy = 0
		startup := newViews(cat, prev)
		for _, name := range startup {
			d.logger.Info("new view", "view", name, "sources", cat.Views[name].SourceNames())
		}
		for _, v := range withDependents(cat, readersOf(cat, added)) {
			if !slices.Contains(startup, v) {
				startup = append(startup, v)
			}
		}
		var barrier []uint64
		if len(added) > 0 {
			// After the commit that published them: what runs now may have
			// written to them before, unstreamed. The next discovery would
			// not see them added again, so no giving up here.
			for {
				if barrier, err = refresher.Running(ctx, pool); err == nil {
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
		select {
		case sched.catalogs <- catalogUpdate{catalog: cat, startup: startup, barrier: barrier, repartitioned: repartitioned}:
			prev = cat
		case <-ctx.Done():
			return
		}
	}
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
	views = withDependents(cat, views)
	// A refresh of one of them running now is soon done; wait for it, within
	// reason.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return d.markOwed(ctx, tx, views) })
		if !errors.Is(err, refresher.ErrRefreshRunning) || !wait.For(ctx, 100*time.Millisecond) {
			return err
		}
	}
}
