// Package events defines what mvrefresher publishes: the payloads of refresh
// and slot events and the NATS subjects they are published on, and the view
// freshness its HTTP endpoints serve. Go subscribers import it to decode
// them; the daemon encodes them with it.
package events

import (
	"fmt"
	"strings"
	"time"
)

// Status of a refresh attempt.
type Status string

const (
	StatusOK     Status = "ok"
	StatusFailed Status = "failed"
)

// Reason says why a view was refreshed.
type Reason string

const (
	// ReasonChange: a source table of the view changed.
	ReasonChange Reason = "change"
	// ReasonCascade: a materialized view the view reads was refreshed.
	ReasonCascade Reason = "cascade"
	// ReasonStartup: the daemon could not have seen earlier changes (first
	// start, a new view, a new source table).
	ReasonStartup Reason = "startup"
	// ReasonManual: somebody asked for it with pg_logical_emit_message.
	ReasonManual Reason = "manual"
	// ReasonPeriodic: refresh_every passed since the view's last refresh
	// started (its rows depend on the time); no change is behind it.
	ReasonPeriodic Reason = "periodic"
)

// Refresh is the payload published after every refresh attempt.
type Refresh struct {
	// View is the qualified name as PostgreSQL's format('%I.%I') spells it.
	View         string    `json:"view"`
	Status       Status    `json:"status"`
	Reason       Reason    `json:"reason"`
	Concurrently bool      `json:"concurrently"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	DurationMS   float64   `json:"duration_ms"`
	LSN          string    `json:"lsn"`
	// FreshThrough is the view's fresh-through position once the attempt
	// is over (see ViewState.FreshThrough): a reader of the view sees every
	// commit at or before it. Absent when the daemon can vouch for none.
	FreshThrough string   `json:"fresh_through,omitempty"`
	Sources      []string `json:"sources"`
	Changes      int      `json:"changes"`
	// FirstChangeAt and StalenessMS are absent when no change is behind
	// the refresh (a startup or periodic refresh, or a cascade from one).
	FirstChangeAt time.Time `json:"first_change_at,omitzero"`
	StalenessMS   float64   `json:"staleness_ms,omitzero"`
	// RowsInserted and RowsDeleted are null for a plain refresh, which
	// rewrites the whole view without counting.
	RowsInserted *int64 `json:"rows_inserted"`
	RowsDeleted  *int64 `json:"rows_deleted"`
	// Maintenance is set for a view maintained incrementally: "incremental"
	// when only the rows the changes named were recomputed, "full" when
	// the whole view was (FullReason says why). Groups counts the view rows
	// recomputed, RowsWritten those written (only rows that differed; an
	// updated row counts once here, and once in each of RowsInserted and
	// RowsDeleted, as CONCURRENTLY counts it).
	Maintenance string `json:"maintenance,omitempty"`
	FullReason  string `json:"full_reason,omitempty"`
	Groups      *int64 `json:"groups,omitempty"`
	RowsWritten *int64 `json:"rows_written,omitempty"`
	Attempt     int    `json:"attempt"`
	Error       string `json:"error,omitempty"`
}

// Subject is where an event for the view schema.name with the given status is
// published: <prefix>.refreshed.<schema>.<view> or <prefix>.failed.<schema>.<view>.
func Subject(prefix string, status Status, schema, name string) string {
	kind := "refreshed"
	if status == StatusFailed {
		kind = "failed"
	}
	return prefix + "." + kind + "." + SubjectToken(schema) + "." + SubjectToken(name)
}

// SubjectToken turns a name into one NATS subject token: every character
// outside [A-Za-z0-9_-] becomes '_', so dots, spaces and wildcards in
// PostgreSQL names cannot split or widen a subject.
func SubjectToken(name string) string {
	if name == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
}

// MsgID is the Nats-Msg-Id of an event: a replayed change refreshes the view
// again at the same LSN, so JetStream can drop the duplicate event. A failed
// attempt gets an id of its own (view@lsn/failed/attempt): sharing the
// success's id would make JetStream drop the success that follows it.
//
// A periodic refresh, or a cascade with no change behind it (from a
// periodic refresh of its base), is at the LSN of the view's previous
// refresh when nothing was written since: its id has its start time too
// (view@lsn/at/<unix nanoseconds>), or JetStream would drop it as a
// duplicate of the previous refresh's event.
func MsgID(e Refresh) string {
	if e.Status == StatusFailed {
		return fmt.Sprintf("%s@%s/failed/%d", e.View, e.LSN, e.Attempt)
	}
	if e.Changes == 0 && (e.Reason == ReasonPeriodic || e.Reason == ReasonCascade) {
		return fmt.Sprintf("%s@%s/at/%d", e.View, e.LSN, e.StartedAt.UnixNano())
	}
	return e.View + "@" + e.LSN
}

// Slot is the slot health published on <prefix>.slot.<slot> every
// slot_check_interval.
type Slot struct {
	Slot              string `json:"slot"`
	Active            bool   `json:"active"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn"`
	CurrentWALLSN     string `json:"current_wal_lsn"`
	LagBytes          int64  `json:"lag_bytes"`
	RetainedBytes     int64  `json:"retained_bytes"`
	WALStatus         string `json:"wal_status"`
	SafeWALSize       *int64 `json:"safe_wal_size"`
	// InvalidationReason is why the server invalidated the slot
	// (PostgreSQL 17 on; absent while it is valid).
	InvalidationReason string    `json:"invalidation_reason,omitempty"`
	PendingViews       int       `json:"pending_views"`
	At                 time.Time `json:"at"`
}

// SlotSubject is where slot health is published.
func SlotSubject(prefix, slot string) string {
	return prefix + ".slot." + SubjectToken(slot)
}

// LatestBucket is the JetStream key-value bucket holding the latest event of
// every view (with nats.jetstream), so that a subscriber starting late reads
// each view's current freshness at once.
func LatestBucket(stream string) string { return stream + "_LATEST" }

// LatestKey is a view's key in LatestBucket.
func LatestKey(schema, name string) string { return SubjectToken(schema) + "." + SubjectToken(name) }
