// Package inspect answers the operator's read-only questions about the
// managed views (check, status, explain, graph) as the daemon would see
// them, whether or not a daemon runs. It changes nothing.
package inspect

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// Inspector is a connection to database_url with the catalog discovered
// once, as the daemon discovers it. Close it when done.
type Inspector struct {
	cfg     config.Config
	pool    *pgxpool.Pool
	log     refresher.Log
	catalog *catalog.Catalog
}

// Open connects to database_url and discovers the managed views.
func Open(ctx context.Context, cfg config.Config) (*Inspector, error) {
	log := refresher.NewLog(cfg.RefreshLogTable.Schema, cfg.RefreshLogTable.Name)
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database_url: %w", err)
	}
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "mvrefresher"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", config.RedactURL(cfg.DatabaseURL), err)
	}
	cat, err := catalog.Discover(ctx, pool, catalog.DiscoverOptions{
		Schemas: cfg.Schemas,
		Enabled: func(name string) bool { return cfg.ViewSettings(name).Enabled },
		Log:     log,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Inspector{cfg: cfg, pool: pool, log: log, catalog: cat}, nil
}

// Close closes the connections.
func (in *Inspector) Close() { in.pool.Close() }
