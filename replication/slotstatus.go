package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SlotStatus is the replication slot as the server sees it.
type SlotStatus struct {
	Name              string  `json:"name"`
	Exists            bool    `json:"exists"`
	Active            bool    `json:"active"`
	ActivePID         *int32  `json:"active_pid"`
	ConfirmedFlushLSN *string `json:"confirmed_flush_lsn"`
	CurrentWALLSN     string  `json:"current_wal_lsn"`
	// LagBytes: WAL written since the confirmed position.
	LagBytes *int64 `json:"lag_bytes"`
	// RetainedBytes: WAL the server keeps for the slot (from restart_lsn).
	RetainedBytes *int64  `json:"retained_bytes"`
	WALStatus     *string `json:"wal_status"`
	SafeWALSize   *int64  `json:"safe_wal_size"`
	// From PostgreSQL 17 on (null before): since when no process streams
	// from the slot, why the server invalidated it, and whether it is a
	// failover slot a standby keeps a copy of.
	InactiveSince      *time.Time `json:"inactive_since"`
	InvalidationReason *string    `json:"invalidation_reason"`
	Failover           *bool      `json:"failover"`
}

// ReadSlot reads the slot named slot on the server the stream decodes on; a
// standby's WAL position is what it has replayed. A missing slot is no
// error: Exists is false.
func ReadSlot(ctx context.Context, pool *pgxpool.Pool, slot string) (SlotStatus, error) {
	s := SlotStatus{Name: slot}
	if err := pool.QueryRow(ctx, "SELECT ("+CurrentLSNSQL+")::text").Scan(&s.CurrentWALLSN); err != nil {
		return s, fmt.Errorf("read the WAL position: %w", err)
	}
	// The columns of 17 and later through to_jsonb: null on 15 and 16.
	err := pool.QueryRow(ctx, `SELECT active, active_pid, confirmed_flush_lsn::text,
			pg_wal_lsn_diff(`+CurrentLSNSQL+`, confirmed_flush_lsn)::bigint,
			pg_wal_lsn_diff(`+CurrentLSNSQL+`, restart_lsn)::bigint, wal_status, safe_wal_size,
			(to_jsonb(s)->>'inactive_since')::timestamptz, to_jsonb(s)->>'invalidation_reason', (to_jsonb(s)->>'failover')::boolean
		FROM pg_replication_slots s WHERE slot_name = $1`, slot).
		Scan(&s.Active, &s.ActivePID, &s.ConfirmedFlushLSN, &s.LagBytes, &s.RetainedBytes, &s.WALStatus, &s.SafeWALSize,
			&s.InactiveSince, &s.InvalidationReason, &s.Failover)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	s.Exists = true
	return s, nil
}
