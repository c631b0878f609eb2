package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/replication"
)

// openStreamSource connects to the server the stream decodes on and checks
// it (replication.CheckSource): primary itself unless replication_url is
// set. Close it with closeStreamSource.
func openStreamSource(ctx context.Context, cfg config.Config, primary *pgxpool.Pool, logger *slog.Logger) (*pgxpool.Pool, replication.Source, error) {
	if cfg.ReplicationURL == "" {
		return primary, replication.Source{}, nil
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.ReplicationURL)
	if err != nil {
		return nil, replication.Source{}, fmt.Errorf("parse replication_url: %w", err)
	}
	// The slot's reads and the replay gate's.
	poolCfg.MaxConns = 2
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "mvrefresher"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, replication.Source{}, fmt.Errorf("connect to replication_url: %w", err)
	}
	src, err := replication.CheckSource(ctx, primary, pool, logger)
	if err != nil {
		pool.Close()
		return nil, replication.Source{}, fmt.Errorf("%w (replication_url %s)", err, config.RedactURL(cfg.ReplicationURL))
	}
	return pool, src, nil
}

func closeStreamSource(pool, primary *pgxpool.Pool) {
	if pool != primary {
		pool.Close()
	}
}

// decodingOn says where the stream decodes, for logs, check and status.
func decodingOn(cfg config.Config, src replication.Source) string {
	switch {
	case src.Standby:
		return "standby " + databaseName(cfg.ReplicationURL)
	case cfg.ReplicationURL != "":
		return "primary " + databaseName(cfg.ReplicationURL) + " (replication_url, the same server as database_url's)"
	}
	return "primary " + databaseName(cfg.DatabaseURL)
}
