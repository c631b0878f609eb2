package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/replication"
)

// replayGate passes a confirmable position on to a slot on a standby only
// once the standby has replayed everything the daemon wrote on the primary
// before it: the refreshes covering the changes up to that position, and
// their log rows. Confirmed earlier, a failover to that standby would lose a
// refresh whose changes the slot no longer streams.
type replayGate struct {
	primary, standby *pgxpool.Pool
	confirm          func(pglogrepl.LSN)
	interval         time.Duration
	logger           *slog.Logger
	offered          atomic.Uint64
}

func newReplayGate(primary, standby *pgxpool.Pool, confirm func(pglogrepl.LSN), logger *slog.Logger) *replayGate {
	return &replayGate{primary: primary, standby: standby, confirm: confirm, interval: replication.DefaultStatusInterval, logger: logger}
}

// offer is the scheduler's confirm: every refresh covering the changes up to
// lsn has finished.
func (g *replayGate) offer(lsn pglogrepl.LSN) {
	for {
		old := g.offered.Load()
		if uint64(lsn) <= old || g.offered.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

// errStandbyPromoted means the standby the stream decodes on was promoted.
// Its WAL from then on is its own, on a new timeline: a position there says
// nothing about what it has of the old primary's. The attempt ends, and the
// next one streams from what the slot confirmed, which the gate never let
// past what the standby had replayed.
var errStandbyPromoted = errors.New("the standby the stream decodes on was promoted")

// run confirms offered positions as the standby replays the primary's WAL,
// until ctx ends (nil) or the standby is promoted (errStandbyPromoted).
func (g *replayGate) run(ctx context.Context) error {
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
		offered := pglogrepl.LSN(g.offered.Load())
		if offered <= confirmed {
			continue
		}
		// Read after the offer: at or past every commit the work up to
		// offered made, since a commit returns once it is flushed. The
		// flush position ends a record, as the replay position does (the
		// insert position may be past the next page's header).
		var written pglogrepl.LSN
		if err := g.primary.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()").Scan(&written); err != nil {
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
				return errStandbyPromoted
			case replayed != nil && *replayed >= written:
				g.confirm(offered)
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
