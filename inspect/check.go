package inspect

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/replication"
)

// StreamStatus is where the replication stream decodes.
type StreamStatus struct {
	// DecodingOn is "primary host:port/db" or "standby host:port/db".
	DecodingOn string `json:"decoding_on"`
	replication.Source
}

// Check lints the managed views. It needs no replication connection.
func (in *Inspector) Check(ctx context.Context) ([]catalog.Finding, error) {
	return catalog.Check(ctx, in.pool, in.catalog, func(v string) bool {
		return in.cfg.ViewSettings(v).Concurrently == config.ConcurrentlyAlways
	})
}

// CheckStream checks the server the stream would decode on, as the daemon
// does at start, and says which it is and its version.
func (in *Inspector) CheckStream(ctx context.Context) (StreamStatus, error) {
	slotPool, stream, err := in.openSource(ctx)
	if err != nil {
		return StreamStatus{}, err
	}
	defer replication.CloseSource(slotPool, in.pool)
	if stream.Version == "" { // decoding on database_url: not read yet
		if err := in.pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&stream.Version); err != nil {
			return StreamStatus{}, fmt.Errorf("read the server version: %w", err)
		}
	}
	return stream, nil
}

// openSource connects to the server the stream decodes on and checks it as
// the daemon does, saying nothing of what it finds but in the result. Close
// the pool with replication.CloseSource.
func (in *Inspector) openSource(ctx context.Context) (*pgxpool.Pool, StreamStatus, error) {
	url := in.cfg.ReplicationURL
	slotPool, src, err := replication.OpenSource(ctx, in.pool, url, config.RedactURL(url), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, StreamStatus{}, err
	}
	return slotPool, StreamStatus{DecodingOn: src.DecodingOn(in.cfg.DatabaseURL, url), Source: src}, nil
}
