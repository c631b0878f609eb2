package refresher

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/maintain"
)

// Maintenance is how a view maintained incrementally is brought up to date.
type Maintenance struct {
	Plan *maintain.Plan
	// TimeZone is the setting the table was computed under (its marker's).
	TimeZone string
	// Changes are the changed rows the maintenance follows; nil or
	// escalated recomputes the whole view.
	Changes *maintain.Changes
	// NameRows: a maintained view follows the table's rows the maintenance
	// recomputes (Outcome.Maintained.Named names them).
	NameRows bool
	// Problem says why the view has no Plan: its definition cannot be
	// maintained (edited since it was converted).
	Problem error
}

// maintainView runs the maintenance of req in tx and reports it in out.
func maintainView(ctx context.Context, tx pgx.Tx, req Request, out *Outcome) error {
	m := req.Maintenance
	if m.Plan == nil {
		return fmt.Errorf("maintain: %w", m.Problem)
	}
	changes := m.Changes
	if changes == nil {
		changes = &maintain.Changes{}
		changes.Escalate("no changed rows to follow")
	}
	res, err := maintain.Maintain(ctx, tx, m.Plan, m.TimeZone, changes, m.NameRows)
	if err != nil {
		return fmt.Errorf("maintain: %w", err)
	}
	out.Maintained = &res
	out.Concurrently = true
	// As CONCURRENTLY counts them: a row that changed is one deleted and
	// one inserted, so that 0 and 0 still means nothing changed.
	ins, del := res.Inserted+res.Updated, res.Deleted+res.Updated
	out.RowsInserted, out.RowsDeleted = &ins, &del
	return nil
}
