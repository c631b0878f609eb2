package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSlotActive means teardown was refused because a process streams from
// the slot.
var ErrSlotActive = errors.New("replication slot is active")

// TeardownResult says what Teardown removed.
type TeardownResult struct {
	SlotDropped        bool
	RetainedBytes      int64 // WAL the slot was holding back
	PublicationDropped bool
}

// Teardown drops the slot (on slotPool's server: the primary's pool, or a
// standby's the stream decodes on) and the publication (on pool's): without
// them nothing holds WAL back for mvrefresher. An active slot is refused
// unless force, which terminates its walsender first.
func Teardown(ctx context.Context, pool, slotPool *pgxpool.Pool, slot, publication string, force bool) (TeardownResult, error) {
	res, err := dropSlot(ctx, slotPool, slot, force)
	if err != nil {
		return res, err
	}
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", publication).Scan(&res.PublicationDropped); err != nil {
		return res, fmt.Errorf("read publication %q: %w", publication, err)
	}
	if res.PublicationDropped {
		if _, err := pool.Exec(ctx, "DROP PUBLICATION "+pgx.Identifier{publication}.Sanitize()); err != nil {
			return res, fmt.Errorf("drop publication %q: %w", publication, err)
		}
	}
	return res, nil
}

func dropSlot(ctx context.Context, pool *pgxpool.Pool, slot string, force bool) (TeardownResult, error) {
	var res TeardownResult
	var pid *int32
	var retained *int64
	err := pool.QueryRow(ctx, `SELECT active_pid, pg_wal_lsn_diff(`+CurrentLSNSQL+`, restart_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid, &retained)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return res, fmt.Errorf("read replication slot %q: %w", slot, err)
	default:
		if pid != nil {
			if !force {
				return res, fmt.Errorf("%w: %q is streamed by pid %d: stop mvrefresher first, or pass --force to terminate it", ErrSlotActive, slot, *pid)
			}
			if err := terminate(ctx, pool, slot, *pid); err != nil {
				return res, err
			}
		}
		if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
			return res, fmt.Errorf("drop replication slot %q: %w", slot, err)
		}
		res.SlotDropped = true
		if retained != nil {
			res.RetainedBytes = *retained
		}
	}
	return res, nil
}

// terminate ends the walsender streaming the slot and waits until the slot
// is released.
func terminate(ctx context.Context, pool *pgxpool.Pool, slot string, pid int32) error {
	if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		return fmt.Errorf("terminate walsender %d of slot %q: %w", pid, slot, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var active bool
		if err := pool.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil {
			return fmt.Errorf("read replication slot %q: %w", slot, err)
		}
		if !active {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication slot %q is still active 10s after terminating pid %d", slot, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
