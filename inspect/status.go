package inspect

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

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
	// Incremental is how it is maintained incrementally, or why not
	// (absent for a view neither maintained nor marked incremental).
	Incremental *Incremental `json:"incremental,omitempty"`
}

// StatusReport is what `mvrefresher status` shows.
type StatusReport struct {
	Stream StreamStatus           `json:"stream"`
	Slot   replication.SlotStatus `json:"slot"`
	// SlotsInDatabase are the logical slots of the database, listed when
	// the configured slot does not exist: most often the slot setting
	// names the wrong one.
	SlotsInDatabase []string     `json:"slots_in_database,omitempty"`
	Views           []ViewStatus `json:"views"`
}

// Status reads the slot, the managed views and the refresh log.
func (in *Inspector) Status(ctx context.Context) (StatusReport, error) {
	var rep StatusReport
	slotPool, stream, err := in.openSource(ctx)
	if err != nil {
		return rep, err
	}
	defer replication.CloseSource(slotPool, in.pool)
	rep.Stream = stream
	if rep.Slot, err = replication.ReadSlot(ctx, slotPool, in.cfg.Slot); err != nil {
		return rep, err
	}
	if !rep.Slot.Exists {
		rows, _ := slotPool.Query(ctx, `SELECT slot_name::text FROM pg_replication_slots
			WHERE slot_type = 'logical' AND database = current_database() ORDER BY slot_name`)
		if rep.SlotsInDatabase, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return rep, fmt.Errorf("list the replication slots: %w", err)
		}
	}
	cat := in.catalog
	for _, name := range cat.Names() {
		v := cat.Views[name]
		incremental, err := in.incremental(ctx, v)
		if err != nil {
			return rep, err
		}
		rep.Views = append(rep.Views, ViewStatus{View: name, Managed: true, Sources: v.SourceNames(), DependsOn: nonNil(v.Bases), Incremental: incremental})
	}
	for _, p := range cat.Excluded {
		rep.Views = append(rep.Views, ViewStatus{View: p.View, Problem: p.Code + ": " + p.Message, Sources: []string{}, DependsOn: []string{}})
	}
	names := make([]string, len(rep.Views))
	for i, v := range rep.Views {
		names[i] = v.View
	}
	rows, err := in.log.Rows(ctx, in.pool, names)
	if err != nil {
		return rep, err
	}
	targets := schedule.TargetsFromLog(in.cfg, cat, rows)
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

// nonNil makes a nil list an empty one: JSON says [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
