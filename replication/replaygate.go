package replication

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ReplayGate passes a confirmable position on to a slot on a standby only
// once the standby has replayed everything the daemon wrote on the primary
// before it: the refreshes covering the changes up to that position, and
// their log rows. Confirmed earlier, a failover to that standby would lose a
// refresh whose changes the slot no longer streams.
//
// It wraps the stream's Confirm: the gate's Confirm takes what the stream's
// would, and Run passes it on.
type ReplayGate struct {
	primary, standby *pgxpool.Pool
	stream           *Stream
	interval         time.Duration
	wal              WALGeometry
	logger           *slog.Logger
	offered          forwardLSN
}

// NewReplayGate gates stream, which decodes on standby, a physical standby
// of primary.
func NewReplayGate(primary, standby *pgxpool.Pool, wal WALGeometry, stream *Stream, logger *slog.Logger) *ReplayGate {
	return &ReplayGate{primary: primary, standby: standby, wal: wal, stream: stream, interval: DefaultStatusInterval, logger: logger}
}

// Confirm offers lsn: every refresh covering the changes up to it has
// finished. Run confirms it on the stream once the standby has replayed
// them. It never moves backwards.
func (g *ReplayGate) Confirm(lsn pglogrepl.LSN) { g.offered.advance(lsn) }

// inserted is the end of the last record inserted into the primary's WAL,
// as a standby's replay position would state it. pg_current_wal_insert_lsn
// is past the next page's header when that record ended a page; a standby
// that replayed it is at the page's start until more WAL comes, which an
// idle primary may not write for a long time.
func (g *ReplayGate) inserted(ctx context.Context) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	if err := g.primary.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		return 0, err
	}
	return g.wal.LastRecordEnd(lsn), nil
}

// ErrStandbyPromoted means the standby the stream decodes on was promoted.
// Its WAL from then on is its own, on a new timeline: a position there says
// nothing about what it has of the old primary's. The attempt ends, and the
// next one streams from what the slot confirmed, which the gate never let
// past what the standby had replayed.
var ErrStandbyPromoted = errors.New("the standby the stream decodes on was promoted")

// Run confirms offered positions as the standby replays the primary's WAL,
// until ctx ends (nil) or the standby is promoted (ErrStandbyPromoted).
func (g *ReplayGate) Run(ctx context.Context) error {
	ticker := time.NewTicker(g.interval)
	defer ticker.Stop()
	var confirmed pglogrepl.LSN
	tick := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-ticker.C:
			return true
		}
	}
	for tick() {
		offered := g.offered.load()
		if offered <= confirmed {
			continue
		}
		// Read after the offer: past every commit the work up to offered
		// made, flushed or not (synchronous_commit = off returns before
		// the flush).
		written, err := g.inserted(ctx)
		if err != nil {
			g.logger.Debug("read the primary's WAL position", "error", err)
			continue
		}
		for {
			var replayed *pglogrepl.LSN
			var inRecovery bool
			err := g.standby.QueryRow(ctx, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()").Scan(&inRecovery, &replayed)
			switch {
			case err != nil:
				g.logger.Debug("read the standby's replay position", "error", err)
			case !inRecovery:
				return ErrStandbyPromoted
			case replayed != nil && *replayed >= written:
				g.logger.Debug("the standby has replayed the primary's WAL", "offered", offered.String(), "primary_inserted", written.String(), "standby_replayed", replayed.String())
				g.stream.Confirm(offered)
				confirmed = offered
			}
			if confirmed == offered {
				break
			}
			if !tick() {
				return nil
			}
		}
	}
	return nil
}
