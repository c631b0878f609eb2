package inspect

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/maintain"
)

// Incremental is how a managed view is maintained incrementally, or why it
// is not, for a view marked `incremental: true` or maintained already.
type Incremental struct {
	// Maintained: the view is a table mvrefresher maintains incrementally
	// (its definition is the plain view <name>__definition).
	Maintained bool `json:"maintained"`
	// Configured: its configuration says incremental: true. A maintained
	// view that is not configured so becomes a materialized view again at
	// the daemon's next start; a configured one that is not maintained
	// (and not Ineligible) becomes a maintained table then.
	Configured bool `json:"configured"`
	// Ineligible lists why its definition cannot be maintained
	// incrementally: a marked view stays a materialized view refreshed
	// whole, a maintained view's refreshes fail.
	Ineligible []string `json:"ineligible,omitempty"`
	// Key are the columns that identify the view's rows: the rows a change
	// names are recomputed by them.
	Key []string `json:"key,omitempty"`
	// Sources are the tables its definition reads.
	Sources []IncrementalSource `json:"sources,omitempty"`
}

// IncrementalSource is how changes to one table a maintained view reads
// are followed.
type IncrementalSource struct {
	Table string `json:"table"`
	// Maintained: the table is a view mvrefresher maintains incrementally.
	// Its changes do not come through the WAL but through its
	// maintenances, each of which names the rows it recomputed.
	Maintained bool `json:"maintained,omitempty"`
	// Full says why any change to the table recomputes the whole view; ""
	// when its changed rows (a maintained table's: the rows its
	// maintenance names) name the view rows to recompute.
	Full string `json:"full,omitempty"`
	// Reads are the table's columns that name the view rows.
	Reads []string `json:"reads"`
	// OldRowCovers: the replica identity (Identity) makes the WAL carry
	// Reads for an UPDATE's or DELETE's old row, so those are followed row
	// by row too; without it they recompute the whole view.
	OldRowCovers bool   `json:"old_row_covers"`
	Identity     string `json:"identity"`
	// Filter is the view's WHERE on the table's columns alone, as the
	// definition prints it: a changed row it rejects names nothing. ""
	// when none.
	Filter string `json:"filter,omitempty"`
}

// incremental reads how the managed view v is maintained incrementally;
// nil for a view neither maintained nor marked incremental.
func (in *Inspector) incremental(ctx context.Context, v *catalog.View) (*Incremental, error) {
	out := &Incremental{Maintained: v.Maintained != nil, Configured: in.cfg.ViewSettings(v.Name).Incremental}
	if !out.Maintained && !out.Configured {
		return nil, nil
	}
	definition := v.OID
	if out.Maintained {
		definition = v.Maintained.Definition
	}
	plan, err := maintain.Analyze(ctx, in.pool, v.Name, definition)
	var ineligible *maintain.Ineligible
	switch {
	case errors.As(err, &ineligible):
		out.Ineligible = ineligible.Reasons
		return out, nil
	case err != nil:
		return nil, err
	}
	for _, k := range plan.Key {
		out.Key = append(out.Key, plan.Columns[k].Name)
	}
	for _, name := range slices.Sorted(maps.Keys(plan.Sources)) {
		s := plan.Sources[name]
		src := IncrementalSource{Table: s.Name, Full: s.Full, Reads: nonNil(s.Reads), OldRowCovers: s.OldRowCovers, Identity: s.Identity, Filter: s.Filter}
		if base := in.catalog.Views[name]; base != nil && base.Maintained != nil {
			src.Maintained, src.OldRowCovers, src.Identity = true, false, ""
			if src.Full, err = in.followsMaintained(ctx, plan, base); err != nil {
				return nil, err
			}
		}
		out.Sources = append(out.Sources, src)
	}
	return out, nil
}

// followsMaintained says why plan's view cannot follow the rows the
// maintenances of the maintained view base name, "" when it can.
func (in *Inspector) followsMaintained(ctx context.Context, plan *maintain.Plan, base *catalog.View) (string, error) {
	basePlan, err := maintain.Analyze(ctx, in.pool, base.Name, base.Maintained.Definition)
	var ineligible *maintain.Ineligible
	switch {
	case errors.As(err, &ineligible):
		return base.Name + " cannot be maintained incrementally: " + strings.Join(ineligible.Reasons, "; "), nil
	case err != nil:
		return "", err
	}
	return plan.FollowsTable(basePlan), nil
}

// Summary says in a line how the view is maintained.
func (m *Incremental) Summary() string {
	switch {
	case m.Maintained && len(m.Ineligible) > 0:
		return "maintained incrementally, but its definition cannot be: " + strings.Join(m.Ineligible, "; ") + " (its refreshes fail; turn incremental off for it)"
	case len(m.Ineligible) > 0:
		return "marked incremental, but cannot be maintained incrementally: " + strings.Join(m.Ineligible, "; ") + " (refreshed whole)"
	case m.Maintained && !m.Configured:
		return fmt.Sprintf("maintained incrementally (key %s); not marked incremental: a materialized view again at the daemon's next start", strings.Join(m.Key, ", "))
	case m.Maintained:
		return fmt.Sprintf("maintained incrementally (key %s)", strings.Join(m.Key, ", "))
	default:
		return fmt.Sprintf("marked incremental, not converted yet: the daemon maintains it incrementally from its next start (key %s)", strings.Join(m.Key, ", "))
	}
}

// Follows says in a line how changes to the source are followed.
func (s IncrementalSource) Follows() string {
	if s.Filter != "" && s.Full == "" {
		return s.follows() + "; rows " + s.Filter + " rejects name nothing"
	}
	return s.follows()
}

func (s IncrementalSource) follows() string {
	switch {
	case s.Maintained && s.Full != "":
		return "maintained incrementally: each of its maintenances recomputes the whole view after it: " + s.Full
	case s.Maintained:
		return fmt.Sprintf("maintained incrementally: followed through its maintenances, by the rows each recomputes (by %s; one that recomputes it whole recomputes the whole view too)", strings.Join(s.Reads, ", "))
	case s.Full != "":
		return "any change recomputes the whole view: " + s.Full
	case s.OldRowCovers:
		return fmt.Sprintf("followed row by row (by %s; %s carries them for UPDATE and DELETE)", strings.Join(s.Reads, ", "), s.Identity)
	default:
		return fmt.Sprintf("INSERTs followed row by row (by %s); UPDATEs and DELETEs recompute the whole view: %s does not carry those columns", strings.Join(s.Reads, ", "), s.Identity)
	}
}
