package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// Check lints the views cfg manages, the way the daemon sees them. It needs
// no replication connection and works whether or not a daemon runs.
func Check(ctx context.Context, cfg config.Config) ([]catalog.Finding, error) {
	log := refreshLog(cfg)
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", config.RedactURL(cfg.DatabaseURL), err)
	}
	cat, err := catalog.Discover(ctx, pool, discoverOptions(cfg, log))
	if err != nil {
		return nil, err
	}
	return catalog.Check(ctx, pool, cat, func(v string) bool { return refreshMode(cfg, v) == refresher.ModeConcurrently })
}

// CheckStream checks the server the stream would decode on, as the daemon
// does at start, and says which it is.
func CheckStream(ctx context.Context, cfg config.Config) (StreamStatus, error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return StreamStatus{}, fmt.Errorf("connect to database: %w", err)
	}
	defer pool.Close()
	slotPool, src, err := replication.OpenSource(ctx, pool, cfg.ReplicationURL, config.RedactURL(cfg.ReplicationURL), slog.New(slog.DiscardHandler))
	if err != nil {
		return StreamStatus{}, err
	}
	defer replication.CloseSource(slotPool, pool)
	if src.Version == "" {
		if err := pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&src.Version); err != nil {
			return StreamStatus{}, fmt.Errorf("read the server version: %w", err)
		}
	}
	return StreamStatus{DecodingOn: src.DecodingOn(cfg.DatabaseURL, cfg.ReplicationURL), Source: src}, nil
}

func discoverOptions(cfg config.Config, log refresher.Log) catalog.DiscoverOptions {
	return catalog.DiscoverOptions{
		Schemas: cfg.Schemas,
		Enabled: func(name string) bool { return cfg.ViewSettings(name).Enabled },
		Log:     log,
	}
}

// refreshLog is the configured refresh_log_table.
func refreshLog(cfg config.Config) refresher.Log {
	return refresher.NewLog(cfg.RefreshLogTable.Schema, cfg.RefreshLogTable.Name)
}
