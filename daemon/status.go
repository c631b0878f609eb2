package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
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

// ViewStatus is one view and its last refresh.
type ViewStatus struct {
	View      string   `json:"view"`
	Managed   bool     `json:"managed"`
	Problem   string   `json:"problem,omitempty"`
	Sources   []string `json:"sources"`
	DependsOn []string `json:"depends_on"`
	// From the refresh log; null when never refreshed by mvrefresher.
	RefreshedAt  *time.Time `json:"refreshed_at"`
	AttemptedAt  *time.Time `json:"attempted_at"`
	Status       *string    `json:"status"`
	Error        *string    `json:"error"`
	RefreshCount int64      `json:"refresh_count"`
	DurationMS   *float64   `json:"duration_ms"`
	Concurrently *bool      `json:"concurrently"`
	RowsInserted *int64     `json:"rows_inserted"`
	RowsDeleted  *int64     `json:"rows_deleted"`
	LSN          *string    `json:"lsn"`
	// MaxStaleness is its effective staleness target, planned from the
	// last durations (absent without one); MaxStalenessFrom names the view
	// whose max_staleness sets it.
	MaxStaleness     string `json:"max_staleness,omitempty"`
	MaxStalenessFrom string `json:"max_staleness_from,omitempty"`
}

// StreamStatus is where the replication stream decodes.
type StreamStatus struct {
	// DecodingOn is "primary host:port/db" or "standby host:port/db".
	DecodingOn string `json:"decoding_on"`
	replication.Source
}

// StatusReport is what `mvrefresher status` shows.
type StatusReport struct {
	Stream StreamStatus `json:"stream"`
	Slot   SlotStatus   `json:"slot"`
	Views  []ViewStatus `json:"views"`
}

// Status reads the slot, the managed views and the refresh log. It works
// whether or not a daemon runs.
func Status(ctx context.Context, cfg config.Config) (StatusReport, error) {
	log, err := refreshLog(cfg)
	if err != nil {
		return StatusReport{}, err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return StatusReport{}, fmt.Errorf("connect to database: %w", err)
	}
	defer pool.Close()
	rep := StatusReport{Slot: SlotStatus{Name: cfg.Slot}}
	slotPool, src, err := openStreamSource(ctx, cfg, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		return rep, err
	}
	defer closeStreamSource(slotPool, pool)
	rep.Stream = StreamStatus{DecodingOn: decodingOn(cfg, src), Source: src}
	if err := readSlot(ctx, slotPool, &rep.Slot); err != nil {
		return rep, err
	}
	cat, err := catalog.Discover(ctx, pool, discoverOptions(cfg, log))
	if err != nil {
		return rep, err
	}
	for _, name := range cat.Names() {
		v := cat.Views[name]
		rep.Views = append(rep.Views, ViewStatus{View: name, Managed: true, Sources: v.SourceNames(), DependsOn: nonNil(v.Bases)})
	}
	for _, p := range cat.Excluded {
		rep.Views = append(rep.Views, ViewStatus{View: p.View, Problem: p.Code + ": " + p.Message, Sources: []string{}, DependsOn: []string{}})
	}
	names := make([]string, len(rep.Views))
	for i, v := range rep.Views {
		names[i] = v.View
	}
	rows, err := log.Rows(ctx, pool, names)
	if err != nil {
		return rep, err
	}
	targets := schedule.TargetsFromLog(cfg, cat, rows)
	for i := range rep.Views {
		v := &rep.Views[i]
		if t, ok := targets[v.View]; ok {
			v.MaxStaleness, v.MaxStalenessFrom = t.MaxStaleness.String(), t.From
		}
		r, ok := rows[v.View]
		if !ok {
			continue // never attempted
		}
		v.RefreshedAt, v.AttemptedAt, v.Status, v.Error = r.RefreshedAt, &r.AttemptedAt, &r.Status, r.Error
		v.RefreshCount, v.DurationMS, v.Concurrently = r.RefreshCount, r.DurationMS, r.Concurrently
		v.RowsInserted, v.RowsDeleted, v.LSN = r.RowsInserted, r.RowsDeleted, r.LSN
	}
	return rep, nil
}

// readSlot reads the slot on the server the stream decodes on; a standby's
// WAL position is what it has replayed.
func readSlot(ctx context.Context, pool *pgxpool.Pool, s *SlotStatus) error {
	if err := pool.QueryRow(ctx, "SELECT ("+replication.CurrentLSNSQL+")::text").Scan(&s.CurrentWALLSN); err != nil {
		return fmt.Errorf("read the WAL position: %w", err)
	}
	// The columns of 17 and later through to_jsonb: null on 15 and 16.
	err := pool.QueryRow(ctx, `SELECT active, active_pid, confirmed_flush_lsn::text,
			pg_wal_lsn_diff(`+replication.CurrentLSNSQL+`, confirmed_flush_lsn)::bigint,
			pg_wal_lsn_diff(`+replication.CurrentLSNSQL+`, restart_lsn)::bigint, wal_status, safe_wal_size,
			(to_jsonb(s)->>'inactive_since')::timestamptz, to_jsonb(s)->>'invalidation_reason', (to_jsonb(s)->>'failover')::boolean
		FROM pg_replication_slots s WHERE slot_name = $1`, s.Name).
		Scan(&s.Active, &s.ActivePID, &s.ConfirmedFlushLSN, &s.LagBytes, &s.RetainedBytes, &s.WALStatus, &s.SafeWALSize,
			&s.InactiveSince, &s.InvalidationReason, &s.Failover)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read replication slot %q: %w", s.Name, err)
	}
	s.Exists = true
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
