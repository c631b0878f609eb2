package daemon

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/refresher"
)

// discoverLoop re-reads the catalog every discovery_interval so that new and
// dropped views and new source tables are picked up without a restart. The
// publication is synced before the scheduler hears of a new source, so the
// startup refresh it triggers cannot miss a change.
func (d *Daemon) discoverLoop(ctx context.Context, pool *pgxpool.Pool, sched *scheduler, prev *refresher.Catalog) {
	ticker := time.NewTicker(d.cfg.DiscoveryInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cat, added, err := d.discover(ctx, pool)
		if err != nil {
			if ctx.Err() == nil {
				d.logger.Warn("rediscover views", "error", err)
			}
			continue
		}
		var startup []string
		for _, name := range cat.Names() {
			if prev.Views[name] == nil {
				d.logger.Info("new view", "view", name, "sources", cat.Views[name].SourceNames())
				startup = append(startup, name)
			}
		}
		startup = appendReaders(startup, cat, added)
		repartitioned := cat.Repartitioned(prev)
		for view, sources := range repartitioned {
			d.logger.Info("partitions attached, detached or dropped: refreshing", "view", view, "sources", sources)
		}
		select {
		case sched.catalogs <- catalogUpdate{catalog: cat, startup: startup, repartitioned: repartitioned}:
			prev = cat
		case <-ctx.Done():
			return
		}
	}
}
