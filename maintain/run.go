package maintain

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxGroups is how many view rows (groups) a maintenance recomputes from
// changed rows: past it, recomputing the whole view costs about the same.
const MaxGroups = 10000

// Result is what one maintenance did.
type Result struct {
	// Full says why the whole view was recomputed; "" when only the rows
	// the changes named were.
	Full string
	// Groups counts the view rows recomputed (that exist after it).
	Groups int64
	// Inserted, Updated and Deleted count the rows written: only those
	// that differ.
	Inserted, Updated, Deleted int64
	// Named are the rows recomputed, by key, when Maintain was asked for
	// them (nil otherwise): what a maintained view built on the table
	// follows.
	Named *Named
}

// The modes a maintenance runs in (Result.Mode), as the refresh log, the
// events and the metrics name them.
const (
	ModeIncremental = "incremental"
	ModeFull        = "full"
)

// Mode is ModeIncremental or ModeFull.
func (r Result) Mode() string {
	if r.Full != "" {
		return ModeFull
	}
	return ModeIncremental
}

// Written counts every row written.
func (r Result) Written() int64 { return r.Inserted + r.Updated + r.Deleted }

// Maintain brings the maintained table of p up to date with what c
// follows, in tx (which the caller commits), under the TimeZone the table
// was computed with. With name, the result also names the rows it
// recomputed (Result.Named), which costs an aggregate over the changed
// rows: only worth it when a maintained view follows the table. The
// caller holds the view's advisory lock: maintenances of one view never
// overlap.
func Maintain(ctx context.Context, tx pgx.Tx, p *Plan, timeZone string, c *Changes, name bool) (Result, error) {
	// Custom plans: a recompute's plan must use the keys it is bound to
	// (an index on them), whatever the statement cache has seen before.
	// The text forms (textForms) are the stream's, which every session
	// reads back as the same value: named key tuples go to another
	// maintenance, under another TimeZone (a timestamptz printed with a
	// zone abbreviation, as DateStyle SQL does, can read back as another
	// zone's), and floats keep all their digits.
	if _, err := tx.Exec(ctx, `SELECT set_config('TimeZone', $1, true), set_config('search_path', 'pg_catalog, pg_temp', true),
		set_config('plan_cache_mode', 'force_custom_plan', true), `+textForms, timeZone); err != nil {
		return Result{}, fmt.Errorf("pin TimeZone, search_path and the text forms: %w", err)
	}
	res := Result{Full: c.Full()}
	if name {
		res.Named = &Named{key: p.keyNames()}
	}
	var s statement
	if res.Full == "" {
		var err error
		if s, res.Full, err = restrict(ctx, tx, p, c, res.Named); err != nil {
			return Result{}, err
		}
	}
	if res.Full != "" && res.Named != nil {
		res.Named = &Named{key: res.Named.key, Full: fmt.Sprintf("%s was recomputed whole (%s)", p.Table, res.Full)}
	}
	if res.Full != "" {
		s = statement{definition: p.Text}
	} else if s.definition == "" {
		return res, nil // the changes name no view row
	}
	err := tx.QueryRow(ctx, s.sql(p), s.args...).Scan(&res.Groups, &res.Inserted, &res.Updated, &res.Deleted)
	if err != nil {
		return Result{}, fmt.Errorf("recompute: %w", err)
	}
	return res, nil
}

// statement is a maintenance: the definition to recompute from (with
// maybe a range on a source's column), and the view rows to recompute
// (all when restriction is "").
type statement struct {
	definition  string
	restriction string // over the view's columns, qualified by "r."
	args        []any
}

func (s statement) sql(p *Plan) string {
	cols := make([]string, len(p.Columns))
	var set []string
	for i, c := range p.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
		if !slices.Contains(p.Key, i) {
			set = append(set, cols[i]+" = EXCLUDED."+cols[i])
		}
	}
	var key, match []string
	for _, k := range p.Key {
		key = append(key, cols[k])
		match = append(match, fmt.Sprintf("ARRAY[f.%s] = ARRAY[r.%[1]s]", cols[k]))
	}
	where := "true"
	if s.restriction != "" {
		where = "(" + s.restriction + ")"
	}
	conflict := "DO NOTHING"
	if len(set) > 0 {
		conflict = "DO UPDATE SET " + strings.Join(set, ", ") + " WHERE r OPERATOR(pg_catalog.*<>) EXCLUDED"
	}
	// ARRAY[a] = ARRAY[b] is a's equality with NULL equal to NULL, as the
	// key's unique index (NULLS NOT DISTINCT) has it, and hashable.
	return fmt.Sprintf(`WITH fresh AS MATERIALIZED (SELECT * FROM (%[1]s) r WHERE %[2]s),
gone AS (DELETE FROM %[3]s r WHERE %[2]s AND NOT EXISTS (SELECT FROM fresh f WHERE %[4]s) RETURNING 1),
put AS (INSERT INTO %[3]s AS r SELECT * FROM fresh ON CONFLICT (%[5]s) %[6]s RETURNING xmax = 0 AS inserted)
SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FILTER (WHERE inserted) FROM put), (SELECT count(*) FILTER (WHERE NOT inserted) FROM put), (SELECT count(*) FROM gone)`,
		s.definition, where, p.Table, strings.Join(match, " AND "), strings.Join(key, ", "), conflict)
}

// restrict works out, in PostgreSQL, which view rows the changed rows name
// (the key expressions evaluated over them), and the statement that
// recomputes those; it adds their keys to named, when not nil. full is set
// instead when they are too many.
func restrict(ctx context.Context, tx pgx.Tx, p *Plan, c *Changes, named *Named) (s statement, full string, err error) {
	var ors []string
	var groups int64
	sources := slices.Sorted(func(yield func(string) bool) {
		for name := range c.rows {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range sources {
		src := p.Sources[name]
		whole := p.namesRows(src)
		if named != nil && !whole && named.Full == "" {
			named.Full, named.keys = fmt.Sprintf("the changes to %s do not name whole rows of %s (they compute only some of its key columns)", name, p.Table), nil
		}
		keys, err := evaluateKeys(ctx, tx, p, src, c.rows[name], named != nil && whole && named.Full == "")
		if err != nil {
			return s, "", err
		}
		if keys.groups > MaxGroups {
			return s, fmt.Sprintf("the changes to %s name up to %d view rows (more than %d)", name, keys.groups, MaxGroups), nil
		}
		if keys.named != nil {
			if err := named.addKeys(*keys.named); err != nil {
				return s, "", err
			}
		}
		if keys.groups == 0 {
			continue // the filter let none through
		}
		groups += keys.groups
		var ands []string
		for i, k := range src.Keys {
			col := pgx.Identifier{p.Columns[k.Column].Name}.Sanitize()
			var either []string
			if keys.values[i] != nil {
				s.args = append(s.args, *keys.values[i])
				either = append(either, fmt.Sprintf("r.%s = ANY($%d::%s[])", col, len(s.args), p.Columns[k.Column].Type))
			}
			if keys.null[i] {
				either = append(either, "r."+col+" IS NULL")
			}
			ands = append(ands, "("+strings.Join(either, " OR ")+")")
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		if len(sources) == 1 && keys.bucket != nil {
			s.args = append(s.args, keys.lo, keys.hi)
			b := keys.bucket
			rel := p.def.text[p.def.toks[src.item.start].start:p.def.toks[src.item.start+2].end]
			s.definition = p.def.replaced(src.item, fmt.Sprintf("(SELECT * FROM %[1]s WHERE %[2]s >= $%[3]d::%[4]s AND %[2]s < $%[5]d::%[4]s)",
				rel, b.column, len(s.args)-1, b.colType, len(s.args)))
		}
	}
	if len(ors) == 0 {
		return s, "", nil
	}
	if s.definition == "" {
		s.definition = p.Text
	}
	s.restriction = strings.Join(ors, " OR ")
	if groups > costCheckAbove {
		if full, err = p.tooCostly(ctx, tx, s, groups); err != nil {
			return s, "", err
		}
	}
	return s, full, nil
}

// costCheckAbove is how many view rows a recompute may name before the
// planner is asked whether it costs about as much as the whole view: a few
// groups cost a fraction of it, and asking costs a planning.
const costCheckAbove = 50

// costlyShare is the share of the whole view's estimated cost above which
// recomputing the named groups is not worth it: the whole view is
// recomputed instead (in one statement, where the groups' scattered reads
// become one sequential scan).
const costlyShare = 0.5

// tooCostly says why recomputing s's groups costs about as much as the
// whole view, or "": when they are about as many as the view's rows, or
// when the planner estimates it so (it can underestimate how many rows a
// key expression such as a day bucket matches, hence the count first).
func (p *Plan) tooCostly(ctx context.Context, tx pgx.Tx, s statement, groups int64) (string, error) {
	var rows float64
	if err := tx.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", p.Table).Scan(&rows); err != nil {
		return "", fmt.Errorf("read the view's row estimate: %w", err)
	}
	if rows > 0 && float64(groups) >= costlyShare*rows {
		return fmt.Sprintf("the changes name up to %d view rows, about as many as the view has (%.0f)", groups, rows), nil
	}
	restricted, err := estimate(ctx, tx, fmt.Sprintf("SELECT * FROM (%s) r WHERE %s", s.definition, s.restriction), s.args...)
	if err != nil {
		return "", err
	}
	whole, err := estimate(ctx, tx, p.Text)
	if err != nil {
		return "", err
	}
	if restricted < costlyShare*whole {
		return "", nil
	}
	return fmt.Sprintf("recomputing the groups the changes name would cost about as much as the whole view (planner estimate %.0f of %.0f)", restricted, whole), nil
}

// estimate is the planner's total cost of query.
func estimate(ctx context.Context, tx pgx.Tx, query string, args ...any) (float64, error) {
	var plan []struct {
		Plan struct {
			TotalCost float64 `json:"Total Cost"`
		} `json:"Plan"`
	}
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&plan); err != nil {
		return 0, fmt.Errorf("estimate the cost of a recompute: %w", err)
	}
	if len(plan) == 0 {
		return 0, fmt.Errorf("estimate the cost of a recompute: EXPLAIN returned no plan")
	}
	return plan[0].Plan.TotalCost, nil
}

// sourceKeys are the key values a source's changed rows name: for each of
// the source's Keys, the distinct non-null values (an array literal, nil
// when none) and whether NULL is one; groups counts the distinct keys,
// the view rows they name; lo and hi bound the rows of the time bucket key.
// named, when asked for, are the distinct keys (a JSON array of arrays of
// text, in Plan.Key order).
type sourceKeys struct {
	values []*string
	null   []bool
	groups int64
	bucket *bucket
	lo, hi string
	named  *string
}

func evaluateKeys(ctx context.Context, tx pgx.Tx, p *Plan, src *Source, rows []changedRow, name bool) (sourceKeys, error) {
	out := sourceKeys{values: make([]*string, len(src.Keys)), null: make([]bool, len(src.Keys))}
	// The rows go as JSON text values, each read back with its column
	// type's input function, as the server printed them into the WAL (a
	// json column passed as a JSON value would become a JSON string). $1
	// holds the rows named whatever the filter says, by their key columns
	// (a JSON array, maybe empty); $2, when there are, those the filter
	// judges, with its columns too.
	unjudged, judged := []map[string]*string{}, []map[string]*string{}
	for _, r := range rows {
		o := make(map[string]*string, len(src.Reads)+len(r.filter))
		for j, col := range src.Reads {
			o[col] = r.key[j]
		}
		if !r.filtered || src.Filter == "" {
			unjudged = append(unjudged, o)
			continue
		}
		for j, col := range src.filterOnly {
			o[col] = r.filter[j]
		}
		judged = append(judged, o)
	}
	batches := [][]map[string]*string{unjudged}
	if len(judged) > 0 {
		batches = append(batches, judged)
	}
	var args []any
	for _, objects := range batches {
		b, err := json.Marshal(objects)
		if err != nil {
			return out, fmt.Errorf("encode the changed rows of %s: %w", src.Name, err)
		}
		args = append(args, string(b))
	}
	changed := func(param int, columns, types []string) string {
		var typed, asText []string
		for i, col := range columns {
			ident := pgx.Identifier{col}.Sanitize()
			typed = append(typed, fmt.Sprintf("r.%s::%s AS %[1]s", ident, types[i]))
			asText = append(asText, ident+" text")
		}
		return fmt.Sprintf("(SELECT %s FROM jsonb_to_recordset($%d::text::jsonb) AS r(%s)) %s",
			strings.Join(typed, ", "), param, strings.Join(asText, ", "), src.alias)
	}
	var exprs, aggs, tuple []string
	for i, k := range src.Keys {
		exprs = append(exprs, fmt.Sprintf("%s AS k%d", k.Expr, i))
		aggs = append(aggs, fmt.Sprintf("(array_agg(DISTINCT k%d) FILTER (WHERE k%[1]d IS NOT NULL))::text, coalesce(bool_or(k%[1]d IS NULL), false)", i))
		tuple = append(tuple, fmt.Sprintf("k%d", i))
	}
	// The distinct key values the rows compute: the view rows they name
	// (the restriction, one set of values per key column, can match more
	// combinations, but only those of rows that exist).
	aggs = append(aggs, "count(DISTINCT ROW("+strings.Join(tuple, ", ")+"))")
	named := "NULL::text"
	if name {
		// name is asked only of a source computing every key column.
		var texts []string
		for _, k := range p.Key {
			texts = append(texts, fmt.Sprintf("k%d::text", slices.IndexFunc(src.Keys, func(sk SourceKey) bool { return sk.Column == k })))
		}
		named = "coalesce(json_agg(DISTINCT jsonb_build_array(" + strings.Join(texts, ", ") + ")), '[]')::text"
	}
	bucketAt := slices.IndexFunc(src.Keys, func(k SourceKey) bool { return k.bucket != nil })
	bounds := "NULL::text, NULL::text"
	if bucketAt >= 0 {
		b := src.Keys[bucketAt].bucket
		bounds = fmt.Sprintf("min(k%[1]d)::%[2]s::text, (max(k%[1]d) + '%[3]s'::interval)::%[2]s::text", bucketAt, b.colType, b.width)
	}
	keys := fmt.Sprintf("SELECT %s FROM %s", strings.Join(exprs, ", "), changed(1, src.Reads, src.readTypes))
	if len(args) == 2 {
		keys += fmt.Sprintf(" UNION ALL SELECT %s FROM %s WHERE %s", strings.Join(exprs, ", "),
			changed(2, src.ImageColumns(), src.imageTypes()), src.Filter)
	}
	sql := fmt.Sprintf("SELECT %s, %s, %s FROM (%s) keys", strings.Join(aggs, ", "), bounds, named, keys)
	dest := make([]any, 0, 2*len(src.Keys)+4)
	for i := range src.Keys {
		dest = append(dest, &out.values[i], &out.null[i])
	}
	var lo, hi *string
	dest = append(dest, &out.groups, &lo, &hi, &out.named)
	if err := tx.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		return out, fmt.Errorf("compute the view rows the changes to %s name: %w", src.Name, err)
	}
	if bucketAt >= 0 && lo != nil && hi != nil && !out.null[bucketAt] {
		out.bucket, out.lo, out.hi = src.Keys[bucketAt].bucket, *lo, *hi
	}
	return out, nil
}
