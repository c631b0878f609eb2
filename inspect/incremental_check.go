package inspect

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// checkIncremental finds, for each managed view marked incremental or
// maintained, why it cannot be maintained incrementally (an error), the
// sources any change to which recomputes the whole view (a warning, with
// why), and those whose UPDATEs and DELETEs do because their replica
// identity does not carry the columns naming its rows (a warning, with the
// fix).
func (in *Inspector) checkIncremental(ctx context.Context) ([]catalog.Finding, error) {
	var out []catalog.Finding
	for _, name := range in.catalog.Names() {
		m, err := in.incremental(ctx, in.catalog.Views[name])
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		if len(m.Ineligible) > 0 {
			out = append(out, catalog.Finding{View: name, Severity: catalog.SeverityError, Code: "incremental-ineligible", Message: m.Summary()})
			continue
		}
		for _, s := range m.Sources {
			if s.Full != "" {
				out = append(out, catalog.Finding{View: name, Severity: catalog.SeverityWarning, Code: "incremental-whole-view", Message: fmt.Sprintf(
					"any change to %s recomputes the whole view: %s", s.Table, s.Full)})
				continue
			}
			if s.OldRowCovers || s.Maintained { // a maintained table's changes do not come through the WAL
				continue
			}
			fix, err := in.identityFix(ctx, s)
			if err != nil {
				return nil, err
			}
			out = append(out, catalog.Finding{View: name, Severity: catalog.SeverityWarning, Code: "incremental-replica-identity", Message: fmt.Sprintf(
				"UPDATEs and DELETEs on %s recompute the whole view: its %s does not carry %s, the columns that name the view's rows. %s",
				s.Table, s.Identity, strings.Join(s.Reads, ", "), fix)})
		}
	}
	return out, nil
}

// identityFix says how to make the WAL carry the old values of s.Reads:
// a replica identity index on the primary key and those columns, or FULL.
func (in *Inspector) identityFix(ctx context.Context, s IncrementalSource) (string, error) {
	var primaryKey []string
	var partitioned bool
	if err := in.pool.QueryRow(ctx, `SELECT c.relkind = 'p',
		coalesce((SELECT array_agg(a.attname::text ORDER BY k.o) FROM pg_index i,
		          unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, o)
		          JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attnum = k.attnum
		          WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
		FROM pg_class c WHERE c.oid = $1::regclass`, s.Table).Scan(&partitioned, &primaryKey); err != nil {
		return "", fmt.Errorf("read the primary key of %s: %w", s.Table, err)
	}
	columns := primaryKey
	for _, c := range s.Reads {
		if !slices.Contains(columns, c) {
			columns = append(columns, c)
		}
	}
	target := "ALTER TABLE " + s.Table
	if partitioned {
		target = "on each partition of " + s.Table + " (the WAL carries each partition's identity), ALTER TABLE <partition>"
	}
	return fmt.Sprintf("Fix: an append-only table needs nothing; otherwise %s REPLICA IDENTITY USING INDEX <a unique index on (%s), its columns NOT NULL>, or REPLICA IDENTITY FULL (what a small dimension table should have)",
		target, strings.Join(columns, ", ")), nil
}
