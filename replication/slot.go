package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSlotLost means the server invalidated the slot: the WAL it needed is
// gone (max_slot_wal_keep_size), or it was idle too long
// (idle_replication_slot_timeout, PostgreSQL 18), or another reason
// pg_replication_slots.invalidation_reason gives (PostgreSQL 17 on).
var ErrSlotLost = errors.New("replication slot was invalidated by the server")

// slotInvalidationSQL is why slot s of pg_replication_slots was invalidated,
// or the empty string: invalidation_reason from PostgreSQL 17 on (read
// through to_jsonb, which 15 and 16 lack the column for), conflicting on a
// PostgreSQL 16 standby, and a lost wal_status on any version.
const slotInvalidationSQL = `coalesce(to_jsonb(s)->>'invalidation_reason',
	CASE WHEN (to_jsonb(s)->>'conflicting')::boolean THEN 'rows_removed: a recovery conflict on the standby (the primary removed catalog rows the slot needed: is hot_standby_feedback on, with a physical slot?)' END,
	CASE WHEN s.wal_status = 'lost' THEN 'wal_removed: the WAL it needed is gone (max_slot_wal_keep_size)' END, '')`

// ErrPublicationMissing means the server could not decode the slot's WAL
// because the publication did not exist where it was written (someone
// dropped it; PostgreSQL 15 to 17 fail the stream then). Creating it again
// does not help the WAL already written: the slot must be recreated.
var ErrPublicationMissing = errors.New("the publication was missing where the slot's WAL was written")

// ErrSlotInUse means another instance is streaming from the slot
// (SQLSTATE 55006): this one is a standby.
var ErrSlotInUse = errors.New("replication slot is active in another process")

// CheckSlotFree fails with ErrSlotInUse while another process streams from
// the slot, and, when the slot does not exist yet, if max_replication_slots
// leaves no room to create it.
func CheckSlotFree(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	var pid *int32
	err := pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return checkSlotRoom(ctx, pool, slot)
	}
	if err != nil {
		return fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	if pid != nil {
		return fmt.Errorf("replication slot %q (walsender pid %d): %w", slot, *pid, ErrSlotInUse)
	}
	return nil
}

// ErrNoSlotRoom means the slot does not exist and every slot
// max_replication_slots allows does: a slot may be dropped soon (a base
// backup's temporary one), so the daemon waits for room.
var ErrNoSlotRoom = errors.New("max_replication_slots reached")

// checkSlotRoom fails with ErrNoSlotRoom when every slot max_replication_slots allows exists,
// so that slot cannot be created: the server would refuse with a bare "all
// replication slots are in use".
func checkSlotRoom(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	var used, allowed int
	var names string
	err := pool.QueryRow(ctx, `SELECT count(*), current_setting('max_replication_slots')::int, coalesce(string_agg(slot_name, ', ' ORDER BY slot_name), '')
		FROM pg_replication_slots`).Scan(&used, &allowed, &names)
	if err != nil {
		return fmt.Errorf("count replication slots: %w", err)
	}
	if used < allowed {
		return nil
	}
	return fmt.Errorf("%w: cannot create replication slot %q: all %d replication slots are in use (%s): "+
		"drop one that is no longer needed (SELECT pg_drop_replication_slot('name')), or raise max_replication_slots in postgresql.conf and restart PostgreSQL",
		ErrNoSlotRoom, slot, allowed, names)
}

// SlotState is where streaming from the slot starts.
type SlotState struct {
	// Created is true when this call created the slot: nothing written
	// before Start will ever be streamed.
	Created bool
	Start   pglogrepl.LSN
}

// MinServerVersion is the oldest PostgreSQL major version supported.
const MinServerVersion = 15

// CheckWALLevel fails unless the server is PostgreSQL 15 or later with
// wal_level=logical.
func CheckWALLevel(ctx context.Context, pool *pgxpool.Pool) error {
	var level string
	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('wal_level'), current_setting('server_version_num')::int").Scan(&level, &version); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if err := supportedVersion(version); err != nil {
		return err
	}
	if level != "logical" {
		return fmt.Errorf("wal_level is %q, logical replication needs \"logical\": set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", level)
	}
	return nil
}

// EnsureSlot returns the slot's position, creating a pgoutput slot when none
// exists. Create the publication first: a slot cannot decode WAL written
// before its publication existed. beforeCreate runs just before a slot is
// created, so that the caller can durably note that nothing before it will
// be streamed.
func (s *Stream) EnsureSlot(ctx context.Context, pool *pgxpool.Pool, beforeCreate func() error) (SlotState, error) {
	var (
		plugin, slotType, invalidation string
		database                       *string
		confirmed                      *pglogrepl.LSN
		sameDatabase, active           bool
	)
	err := pool.QueryRow(ctx, `
		SELECT coalesce(plugin, ''), slot_type, database, coalesce(database = current_database(), false),
		       confirmed_flush_lsn, `+slotInvalidationSQL+`, active
		FROM pg_replication_slots s WHERE slot_name = $1`, s.slot).
		Scan(&plugin, &slotType, &database, &sameDatabase, &confirmed, &invalidation, &active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if err := beforeCreate(); err != nil {
			return SlotState{}, err
		}
		res, err := s.createSlot(ctx)
		if sqlState(err) == pgerrcode.DuplicateObject {
			// Another instance created it just now (duplicate_object): use
			// it; its creator marked every view owed first.
			return s.EnsureSlot(ctx, pool, beforeCreate)
		}
		if err != nil {
			return SlotState{}, fmt.Errorf("create replication slot %q: %w", s.slot, err)
		}
		start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return SlotState{}, fmt.Errorf("create replication slot %q: consistent point %q: %w", s.slot, res.ConsistentPoint, err)
		}
		return SlotState{Created: true, Start: start}, nil
	case err != nil:
		return SlotState{}, fmt.Errorf("read replication slot %q: %w", s.slot, err)
	}
	if slotType == "logical" && plugin == "" && active {
		// Another instance is creating it (its decoding plugin is set a
		// moment after the slot appears): it streams from it next.
		return SlotState{}, fmt.Errorf("replication slot %q is being created by another process: %w", s.slot, ErrSlotInUse)
	}
	if slotType != "logical" {
		return SlotState{}, fmt.Errorf("replication slot %q exists but is a %s slot, not a logical pgoutput slot: choose another slot name", s.slot, slotType)
	}
	if plugin != "pgoutput" {
		return SlotState{}, fmt.Errorf("replication slot %q exists but is a %s slot for plugin %q, not a logical pgoutput slot: choose another slot name", s.slot, slotType, plugin)
	}
	if !sameDatabase {
		return SlotState{}, fmt.Errorf("replication slot %q belongs to database %q, not this one: choose another slot name", s.slot, deref(database))
	}
	if invalidation != "" {
		return SlotState{}, fmt.Errorf("replication slot %q: %w (%s); set on_slot_lost: recreate, or drop it (SELECT pg_drop_replication_slot('%s')) and restart: every view is then refreshed once", s.slot, ErrSlotLost, invalidation, s.slot)
	}
	var start pglogrepl.LSN
	if confirmed != nil {
		start = *confirmed
	}
	return SlotState{Start: start}, nil
}

// supportedVersion checks a server_version_num.
func supportedVersion(num int) error {
	if num/10000 < MinServerVersion {
		return fmt.Errorf("the server is PostgreSQL %d.%d; mvrefresher needs PostgreSQL %d or later", num/10000, num%10000, MinServerVersion)
	}
	return nil
}

// createSlot creates the logical pgoutput slot. From PostgreSQL 17 on it is
// a failover slot: a standby with sync_replication_slots = on keeps a copy
// of it, from which the daemon resumes after a failover instead of
// refreshing every view. It costs nothing until the primary names that
// standby in synchronized_standby_slots (then its logical walsenders send
// only what the standby has confirmed). A slot on a standby is not one.
func (s *Stream) createSlot(ctx context.Context) (pglogrepl.CreateReplicationSlotResult, error) {
	options := "SNAPSHOT 'nothing'"
	// A standby refuses failover slots of its own (0A000).
	if s.serverMajor >= 17 && s.primary == nil {
		options += ", FAILOVER true"
	}
	if s.primary != nil {
		stop := s.logStandbySnapshots(ctx)
		defer stop()
	}
	// Slot names are [a-z0-9_] (config validates them): no quoting needed,
	// and the replication grammar takes no quoted name here.
	return pglogrepl.ParseCreateReplicationSlot(s.conn.Exec(ctx,
		fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (%s)", s.slot, options)))
}

// snapshotInterval is how often the primary is asked to log its running
// transactions while a slot is being created on a standby: creation may
// need several such records when transactions run across them.
const snapshotInterval = 100 * time.Millisecond

// logStandbySnapshots asks the primary for running-transactions records
// until the returned stop is called: the slot's creation on the standby
// waits for one, and then for the transactions it lists to end.
func (s *Stream) logStandbySnapshots(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(snapshotInterval)
		defer ticker.Stop()
		for {
			if err := LogStandbySnapshot(ctx, s.primary); err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("creating the slot on the standby waits for the primary's next running-transactions record", "error", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// RecreateSlot drops the slot and creates it anew: the way out of a slot the
// server invalidated (onlyLost: drop it only while it is still invalidated,
// since another instance may have recreated it already) or one that cannot
// decode its WAL. Nothing before the new slot's start will be streamed.
func (s *Stream) RecreateSlot(ctx context.Context, pool *pgxpool.Pool, beforeCreate func() error, onlyLost bool) (SlotState, error) {
	drop := `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots s WHERE slot_name = $1`
	if onlyLost {
		drop += ` AND ` + slotInvalidationSQL + ` <> ''`
	}
	// Another instance may have dropped it first (undefined_object).
	if _, err := pool.Exec(ctx, drop, s.slot); err != nil && sqlState(err) != pgerrcode.UndefinedObject {
		return SlotState{}, fmt.Errorf("drop replication slot %q to recreate it: %w", s.slot, err)
	}
	return s.EnsureSlot(ctx, pool, beforeCreate)
}
