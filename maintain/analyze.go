package maintain

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// Plan is how one view is maintained: its key, and for each table it reads
// how a changed row of that table names the rows of the view to recompute.
type Plan struct {
	// Table is the maintained table (or, before Enable, the materialized
	// view), format('%I.%I').
	Table string
	// Text is the definition as pg_get_viewdef prints it with only
	// pg_catalog on the search path; it runs under that search path.
	Text    string
	Columns []Column
	// Key lists the columns (indexes into Columns) that identify a row:
	// the GROUP BY's, or a source's primary key for a view without one.
	Key []int
	// Sources are the tables the definition reads, by name
	// (format('%I.%I'), a partitioned table's root).
	Sources map[string]*Source
	def     *definition
}

// Column is an output column of the view.
type Column struct {
	Name string
	Type string // format_type(atttypid, atttypmod)
}

// Source is a table the definition reads.
type Source struct {
	Name string
	// Full says why any change to the table needs the whole view
	// recomputed ("" when its changed rows name the view rows to
	// recompute).
	Full string
	// Keys are the key columns computed from the table's columns alone,
	// each with its expression over a row of the table (under Alias).
	Keys []SourceKey
	// Reads are the table's columns those expressions read: what a change
	// must carry for its keys to be known. readTypes are their types.
	Reads     []string
	readTypes []string
	// OldRowCovers: the old row the WAL carries for an UPDATE or DELETE
	// (the replica identity's columns) includes every column of Reads.
	OldRowCovers bool
	// Identity describes the replica identity, for messages.
	Identity string
	alias    string
	item     fromItem
	// Filter is the view's WHERE conjuncts that read the table's columns
	// alone (under its alias in the definition), "" when none does: a
	// changed row they reject names nothing (see sourceFilter).
	Filter string
	// filterOnly are the columns Filter reads besides Reads, filterTypes
	// their types.
	filterOnly, filterTypes []string
}

// SourceKey is one key column a source's rows compute.
type SourceKey struct {
	Column int // index into Plan.Columns
	Expr   string
	// bucket bounds the source's rows of a key value when the key is a time
	// bucket of a column (nil otherwise): the recompute reads only that
	// range, which an index on the column serves.
	bucket *bucket
}

// bucket is a key of the form date_trunc(unit, column) or column::date.
type bucket struct {
	column string // the source's column, quoted
	width  string // an interval: one bucket
	// colType is the column's type, to compare it with the bounds.
	colType string
}

// Ineligible lists why a view cannot be maintained incrementally.
type Ineligible struct {
	View    string
	Reasons []string
}

func (e *Ineligible) Error() string {
	return fmt.Sprintf("%s cannot be maintained incrementally: %s", e.View, strings.Join(e.Reasons, "; "))
}

// timeFunctions give a different answer at each maintenance without a
// change in the WAL.
var timeFunctions = []string{"now", "transaction_timestamp", "statement_timestamp", "clock_timestamp", "timeofday", "age", "random", "gen_random_uuid"}

// Analyze reads how the view defined by the view (or materialized view)
// definitionOID can be maintained as table. It returns an *Ineligible
// error for a definition it cannot maintain.
func Analyze(ctx context.Context, q catalog.Querier, table string, definitionOID uint32) (*Plan, error) {
	// The definition and the type names are read with only pg_catalog on
	// the search path, as the maintenance runs them: every other name comes
	// qualified. In a transaction of its own when q can begin one;
	// otherwise the caller's transaction keeps that search path and the
	// text forms.
	if pool, ok := q.(interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}); ok {
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("analyze %s: begin: %w", table, err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only: nothing to lose
		q = tx
	}
	var searchPath string
	if err := q.QueryRow(ctx, "SELECT set_config('search_path', 'pg_catalog, pg_temp', true)").Scan(&searchPath); err != nil {
		return nil, fmt.Errorf("analyze %s: pin the search path: %w", table, err)
	}
	// The definition's constants are printed as the maintenance reads them.
	if err := PinTextForms(ctx, q); err != nil {
		return nil, fmt.Errorf("analyze %s: %w", table, err)
	}
	shape, err := catalog.ReadShape(ctx, q, definitionOID)
	if err != nil {
		return nil, err
	}
	p := &Plan{Table: table, Sources: map[string]*Source{}}
	if err := q.QueryRow(ctx, `SELECT pg_get_viewdef($1::oid)`, definitionOID).Scan(&p.Text); err != nil {
		return nil, fmt.Errorf("analyze %s: read its definition: %w", table, err)
	}
	if err := readOutputs(ctx, q, definitionOID, p); err != nil {
		return nil, err
	}
	var reasons []string
	for _, u := range shape.Unsupported {
		reasons = append(reasons, "its query has "+u)
	}
	if shape.TimeValues {
		reasons = append(reasons, "its query reads the time (CURRENT_DATE or the like): its rows change without a change in the WAL")
	}
	if bad, err := nondeterministic(ctx, q, shape.Functions); err != nil {
		return nil, fmt.Errorf("analyze %s: %w", table, err)
	} else if bad != "" {
		reasons = append(reasons, "its query calls "+bad+", whose value changes without a change in the WAL")
	}
	if len(reasons) > 0 {
		return nil, &Ineligible{View: table, Reasons: reasons}
	}
	if p.def, err = parseDefinition(p.Text); err != nil {
		return nil, fmt.Errorf("analyze %s: %w", table, err)
	}
	p.Text = p.def.text // without its ;
	outputs := p.def.outputs()
	if len(outputs) != len(p.Columns) || len(shape.Columns) != len(p.Columns) {
		return nil, &Ineligible{View: table, Reasons: []string{fmt.Sprintf("its definition lists %d columns, its query %d: cannot tell them apart", len(outputs), len(shape.Columns))}}
	}
	rels, err := readRelations(ctx, q, shape.Relations)
	if err != nil {
		return nil, fmt.Errorf("analyze %s: %w", table, err)
	}
	if p.Key, err = keyColumns(shape, rels); err != nil {
		return nil, &Ineligible{View: table, Reasons: []string{err.Error()}}
	}
	conjuncts := p.def.whereConjuncts()
	for _, sr := range shape.Relations {
		rel := rels[sr.OID]
		if rel.kind != catalog.KindTable && rel.kind != catalog.KindPartitioned {
			continue // a plain view or materialized view: see below
		}
		s := &Source{Name: rel.name, Identity: rel.identityText}
		p.Sources[rel.name] = s
		switch {
		case sr.Nullable:
			s.Full = "it is on the nullable side of an outer join"
		case sr.Occurrences > 1:
			s.Full = "the query reads it more than once"
		}
		if s.Full == "" {
			if s.item, err = p.def.find(rel.schema, rel.relname); err != nil {
				s.Full = err.Error()
			}
			s.alias = s.item.alias
		}
		if s.Full == "" {
			for _, k := range p.Key {
				reads := shape.Columns[k].Reads
				atts, only := reads[sr.OID]
				if !only || len(reads) != 1 || slices.ContainsFunc(atts, func(a int16) bool { return a <= 0 }) {
					continue
				}
				sk := SourceKey{Column: k, Expr: outputs[k]}
				for _, a := range atts {
					name := rel.columns[a]
					if !slices.Contains(s.Reads, name) {
						s.Reads = append(s.Reads, name)
					}
				}
				sk.bucket = bucketOf(sk.Expr, s.alias, rel)
				s.Keys = append(s.Keys, sk)
			}
			if len(s.Keys) == 0 {
				s.Full = "none of the view's key columns is computed from its columns alone"
			} else if s.Full, err = unserved(ctx, q, sr.OID, s); err != nil {
				return nil, fmt.Errorf("analyze %s: %w", table, err)
			}
		}
		slices.Sort(s.Reads)
		for _, c := range s.Reads {
			s.readTypes = append(s.readTypes, rel.types[c])
		}
		if s.Full == "" {
			s.setFilter(conjuncts, shape.Filters, sr.OID, rel)
		}
		s.OldRowCovers = rel.identityAll || !slices.ContainsFunc(s.Reads, func(c string) bool { return !slices.Contains(rel.identity, c) })
	}
	for _, sr := range shape.Relations {
		if rel := rels[sr.OID]; rel.kind == catalog.KindView {
			reasons = append(reasons, "it reads the view "+rel.name+" in its FROM: only tables named directly can be followed (replace the view by its query)")
		}
	}
	if len(reasons) > 0 {
		return nil, &Ineligible{View: table, Reasons: reasons}
	}
	return p, nil
}

// keyColumns picks the columns that identify the view's rows: the GROUP
// BY's, or, without one, every column of a source's primary key.
func keyColumns(shape *catalog.Shape, rels map[uint32]*relInfo) ([]int, error) {
	var key []int
	if shape.Grouped {
		for i, c := range shape.Columns {
			if c.GroupKey {
				key = append(key, i)
			}
		}
		return key, nil
	}
	for _, sr := range shape.Relations {
		rel := rels[sr.OID]
		if sr.Nullable || sr.Occurrences != 1 || len(rel.primaryKey) == 0 {
			continue
		}
		key = key[:0]
		for _, att := range rel.primaryKey {
			i := slices.IndexFunc(shape.Columns, func(c catalog.ShapeColumn) bool {
				atts, ok := c.Reads[sr.OID]
				return ok && len(c.Reads) == 1 && len(atts) == 1 && atts[0] == att
			})
			if i < 0 {
				break
			}
			key = append(key, i)
		}
		if len(key) == len(rel.primaryKey) {
			return key, nil
		}
	}
	return nil, fmt.Errorf("it has no GROUP BY, and no table's primary key is among its columns: nothing identifies its rows")
}

var (
	// The column is qualified by the source's alias, or not at all
	// (PostgreSQL 16 and later print a lone table's columns bare).
	dateTruncRE = regexp.MustCompile(`^date_trunc\('([a-z]+)'::text, ((?:[^.()" ]+\.|"(?:[^"]|"")+"\.)?)([a-z_][a-z0-9_$]*|"(?:[^"]|"")+")\)$`)
	dateCastRE  = regexp.MustCompile(`^\(((?:[^.()" ]+\.|"(?:[^"]|"")+"\.)?)([a-z_][a-z0-9_$]*|"(?:[^"]|"")+")\)::date$`)
)

// bucketUnits are date_trunc's units and the interval of one bucket.
var bucketUnits = map[string]string{"microseconds": "1 microsecond", "milliseconds": "1 millisecond", "second": "1 second", "minute": "1 minute", "hour": "1 hour",
	"day": "1 day", "week": "7 days", "month": "1 month", "quarter": "3 months", "year": "1 year", "decade": "10 years", "century": "100 years", "millennium": "1000 years"}

// bucketOf recognises a time bucket key over a timestamp column of rel.
func bucketOf(expr, alias string, rel *relInfo) *bucket {
	var col, width string
	ours := func(qualifier string) bool { return qualifier == "" || qualifier == alias+"." }
	if m := dateTruncRE.FindStringSubmatch(expr); m != nil && ours(m[2]) {
		col, width = m[3], bucketUnits[m[1]]
	} else if m := dateCastRE.FindStringSubmatch(expr); m != nil && ours(m[1]) {
		col, width = m[2], "1 day"
	}
	if width == "" {
		return nil
	}
	name := col
	if strings.HasPrefix(col, `"`) {
		name = strings.ReplaceAll(col[1:len(col)-1], `""`, `"`)
	}
	typ := rel.types[name]
	if typ != "timestamp with time zone" && typ != "timestamp without time zone" {
		return nil
	}
	return &bucket{column: pgx.Identifier{name}.Sanitize(), width: width, colType: typ}
}
