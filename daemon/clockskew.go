package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The commit times the stream carries are the server's clock; staleness,
// the arrival lag and the staleness targets compare them with the daemon's.
// The skew between the two, measured at connect, puts them on the daemon's
// clock, so that a server clock a few seconds off is not a few seconds of
// staleness (or none) on every view.

// measureClockSkew reads the server's clock between two reads of the
// daemon's and returns how far the daemon's is ahead (negative: behind),
// taking the server's reading as made halfway through the round trip, and
// that uncertainty: half the round trip.
func measureClockSkew(ctx context.Context, pool *pgxpool.Pool) (skew, uncertainty time.Duration, err error) {
	before := time.Now()
	var server time.Time
	if err := pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&server); err != nil {
		return 0, 0, fmt.Errorf("read the server's clock: %w", err)
	}
	after := time.Now()
	return skewAt(before, server, after), after.Sub(before) / 2, nil
}

func skewAt(before, server, after time.Time) time.Duration {
	return before.Add(after.Sub(before) / 2).Sub(server)
}

// clockSkew measures the skew against the primary, whose clock the commit
// times are on, decoding on a standby included, and logs it.
func (d *Daemon) clockSkew(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	skew, uncertainty, err := measureClockSkew(ctx, pool)
	if err != nil {
		return 0, err
	}
	attrs := []any{"daemon_ahead_by", skew.String(), "uncertainty", uncertainty.String()}
	if skew.Abs() > time.Second {
		d.logger.Warn("the daemon's clock differs from the server's: commit times are corrected by the difference", attrs...)
	} else {
		d.logger.Debug("clock skew against the server", attrs...)
	}
	return skew, nil
}
