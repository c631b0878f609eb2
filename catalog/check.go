package catalog

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Severity of a finding: an error makes `mvrefresher check` exit 1.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Finding is one problem `check` reports about a view.
type Finding struct {
	View     string   `json:"view"`
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
}

// timeFunctions are built-in functions whose result depends on when they
// run although PostgreSQL does not mark them volatile (now() is stable).
var timeFunctions = map[string]bool{
	"now": true, "transaction_timestamp": true, "statement_timestamp": true,
	"clock_timestamp": true, "timeofday": true,
}

// sqlValueFunctions are the time-dependent SQLValueFunction ops
// (CURRENT_DATE ... LOCALTIMESTAMP(n)), by their number in primnodes.h.
var sqlValueFunctions = []string{"CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIME", "CURRENT_TIMESTAMP",
	"CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIME", "LOCALTIMESTAMP", "LOCALTIMESTAMP"}

// Check lints the managed views of cat: what discovery found, CONCURRENTLY
// requirements (errors under concurrently: always), and non-deterministic
// values read from each view's rewrite rule: in an output column they make
// every concurrent refresh rewrite every row; in a filter they make the
// rows change with the time alone, which only a view refreshed on a period
// (refreshedPeriodically: refresh_every is set for it) keeps up with.
func Check(ctx context.Context, q Querier, cat *Catalog, concurrentlyRequired, refreshedPeriodically func(view string) bool) ([]Finding, error) {
	var out []Finding
	for _, p := range cat.Excluded {
		out = append(out, Finding{p.View, SeverityError, p.Code, p.Message})
	}
	for _, p := range cat.Warnings {
		out = append(out, Finding{p.View, SeverityWarning, p.Code, p.Message})
	}
	rules, err := queryRules(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, name := range cat.Names() {
		v := cat.Views[name]
		if v.Maintained != nil {
			continue // a table, never refreshed: populated, keyed by its maintenance's unique index
		}
		always := concurrentlyRequired(name)
		severity := SeverityWarning
		if always {
			severity = SeverityError
		}
		if !v.Populated {
			out = append(out, Finding{name, severity, "not-populated",
				"is not populated (created WITH NO DATA?): its first refresh cannot be CONCURRENTLY and blocks readers"})
		}
		if !v.UniqueIndex {
			out = append(out, Finding{name, severity, "no-unique-index",
				"has no unique index on plain columns without a WHERE clause, so it cannot be refreshed CONCURRENTLY: every refresh takes an ACCESS EXCLUSIVE lock, which blocks its readers and, replayed on hot standbys, holds up their replay or cancels their queries on it (max_standby_streaming_delay). " + indexAdvice(v, rules[v.OID])})
		}
	}
	uses, funcs := collectUses(cat, rules)
	procs, err := queryProcs(ctx, q, funcs)
	if err != nil {
		return nil, err
	}
	for _, u := range uses {
		if f, ok := u.finding(procs, refreshedPeriodically); ok {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].View != out[j].View {
			return out[i].View < out[j].View
		}
		return out[i].Severity == SeverityError && out[j].Severity != SeverityError
	})
	return out, nil
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == SeverityError })
}

// queryRules reads the parsed query of every view and materialized view
// outside the system schemas, and of the system views those read (a view
// over pg_stat_activity reads volatile functions through it). Not all of
// PostgreSQL's own: about 140 views, megabytes of rule text to parse.
func queryRules(ctx context.Context, q Querier) (map[uint32]*node, error) {
	rules := map[uint32]*node{}
	err := readRules(ctx, q, rules, `n.nspname NOT IN ('pg_catalog', 'information_schema')`)
	for asked := map[uint32]bool{}; err == nil; {
		var missing []uint32
		for _, qn := range rules {
			for _, oid := range referencedRelations(qn) {
				if rules[oid] == nil && !asked[oid] {
					asked[oid] = true
					missing = append(missing, oid)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		err = readRules(ctx, q, rules, `c.oid = ANY($1)`, missing)
	}
	return rules, err
}

// readRules adds the parsed queries of the views matching where to rules.
func readRules(ctx context.Context, q Querier, rules map[uint32]*node, where string, args ...any) error {
	rows, err := q.Query(ctx, `SELECT r.ev_class, r.ev_action::text FROM pg_rewrite r
		JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('v', 'm') AND r.rulename = '_RETURN' AND `+where, args...)
	if err != nil {
		return fmt.Errorf("read view definitions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var action string
		if err := rows.Scan(&oid, &action); err != nil {
			return fmt.Errorf("read view definitions: %w", err)
		}
		tree, err := parseNodeTree(action)
		if err != nil {
			return fmt.Errorf("parse the definition of relation %d: %w", oid, err)
		}
		if l, ok := tree.([]any); ok && len(l) == 1 {
			if qn, ok := l[0].(*node); ok && qn.name == "QUERY" {
				rules[oid] = qn
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read view definitions: %w", err)
	}
	return nil
}

// referencedRelations lists the relations a query's range tables name,
// subqueries included.
func referencedRelations(v any) []uint32 {
	var out []uint32
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case *node:
			if x.name == "RANGETBLENTRY" {
				if oid, err := strconv.ParseUint(x.str("relid"), 10, 32); err == nil && oid != 0 {
					out = append(out, uint32(oid))
				}
			}
			for _, f := range x.fields {
				walk(f.value)
			}
		}
	}
	walk(v)
	return out
}

type proc struct {
	schema, name, language string
	volatility             byte // i immutable, s stable, v volatile
	nargs                  int
}

func (p proc) qualified() string {
	if p.schema == "pg_catalog" {
		return p.name
	}
	return p.schema + "." + p.name
}

func queryProcs(ctx context.Context, q Querier, oids []uint32) (map[uint32]proc, error) {
	rows, err := q.Query(ctx, `SELECT p.oid, n.nspname, p.proname, p.provolatile::text, p.pronargs, l.lanname
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
		WHERE p.oid = ANY($1)`, oids)
	if err != nil {
		return nil, fmt.Errorf("read functions used by views: %w", err)
	}
	defer rows.Close()
	procs := map[uint32]proc{}
	for rows.Next() {
		var oid uint32
		var p proc
		var vol string
		if err := rows.Scan(&oid, &p.schema, &p.name, &vol, &p.nargs, &p.language); err != nil {
			return nil, fmt.Errorf("read functions used by views: %w", err)
		}
		p.volatility = vol[0]
		procs[oid] = p
	}
	return procs, rows.Err()
}

// use is a function call found in a view's query.
type use struct {
	view   string
	fn     uint32 // pg_proc OID, or 0 for a SQLValueFunction
	sqlOp  int
	output bool   // reaches an output column
	column string // the view's column, when known
	via    string // the plain view it was found in, if any
}

func (u use) where() string {
	s := "used to filter or order rows"
	if u.output {
		s = "in an output column"
		if u.column != "" {
			s = fmt.Sprintf("in column %q", u.column)
		}
	}
	if u.via != "" {
		s += " (through view " + u.via + ")"
	}
	return s
}

func (u use) finding(procs map[uint32]proc, refreshedPeriodically func(view string) bool) (Finding, bool) {
	var fname string
	timeDependent, volatile := false, false
	var p proc
	if u.fn == 0 {
		if u.sqlOp < 0 || u.sqlOp >= len(sqlValueFunctions) {
			return Finding{}, false
		}
		fname, timeDependent = sqlValueFunctions[u.sqlOp], true
	} else {
		var ok bool
		if p, ok = procs[u.fn]; !ok {
			return Finding{}, false
		}
		fname = p.qualified() + "()"
		builtin := p.schema == "pg_catalog"
		timeDependent = builtin && (timeFunctions[p.name] || (p.name == "age" && p.nargs == 1))
		volatile = p.volatility == 'v'
		if !builtin && !volatile && !timeDependent && p.language != "internal" && p.language != "c" && u.output {
			return Finding{u.view, SeverityWarning, "opaque-function", fmt.Sprintf(
				"calls %s %s: tables its body reads are not in pg_depend, so changes to them never trigger a refresh; if it depends on the time, every concurrent refresh rewrites the rows it produces", fname, u.where())}, true
		}
	}
	if !timeDependent && !volatile {
		return Finding{}, false
	}
	what := "time-dependent"
	if volatile && !timeDependent {
		what = "volatile"
	}
	if u.output {
		return Finding{u.view, SeverityError, "nondeterministic-output", fmt.Sprintf(
			"%s is %s and %s: its value differs on every refresh, so every REFRESH ... CONCURRENTLY finds every row changed and rewrites the whole view. Move it out of the view (the refresh log records when each view was refreshed)", fname, what, u.where())}, true
	}
	if timeDependent {
		if refreshedPeriodically(u.view) {
			return Finding{}, false // refresh_every keeps up with the time
		}
		return Finding{u.view, SeverityWarning, "time-based-filter", fmt.Sprintf(
			"%s is time-dependent and %s: the view's rows change with the time alone, which no change in the WAL announces. Set refresh_every for it (views: {%s: {refresh_every: 1h}}, or the period its rows change on) and the daemon refreshes it on that period too", fname, u.where(), u.view)}, true
	}
	return Finding{u.view, SeverityWarning, "nondeterministic-filter", fmt.Sprintf(
		"%s is %s and %s: the view's rows depend on when it is refreshed, and the passing of time alone never triggers a refresh", fname, what, u.where())}, true
}

// collectUses walks every managed view's query (and the plain views it
// reads) for function calls.
func collectUses(cat *Catalog, rules map[uint32]*node) ([]use, []uint32) {
	var uses []use
	var oids []uint32
	for _, name := range cat.Names() {
		v := cat.Views[name]
		w := walker{view: name, rules: rules, seen: map[uint32]bool{v.OID: true}, emit: func(u use) {
			uses = append(uses, u)
			if u.fn != 0 && !slices.Contains(oids, u.fn) {
				oids = append(oids, u.fn)
			}
		}}
		if q := rules[v.OID]; q != nil {
			w.query(q, true, "", "")
		}
	}
	return uses, oids
}

type walker struct {
	view  string
	rules map[uint32]*node
	seen  map[uint32]bool
	emit  func(use)
}

// query walks one Query: its target list keeps the mode (output), FROM
// subqueries, CTEs and plain views feed the output too, and everything else
// (WHERE, JOIN ON, HAVING, ORDER BY, LIMIT) only filters.
func (w *walker) query(q *node, output bool, column, via string) {
	for _, t := range q.list("targetList") {
		te, ok := t.(*node)
		if !ok {
			continue
		}
		col := column
		if col == "" && via == "" {
			col = te.str("resname")
		}
		w.expr(te.get("expr"), output && te.str("resjunk") != "true", col, via)
	}
	for _, r := range q.list("rtable") {
		rte, ok := r.(*node)
		if !ok {
			continue
		}
		switch rte.str("rtekind") {
		case "0": // a relation: follow plain views
			oid, err := strconv.ParseUint(rte.str("relid"), 10, 32)
			if err != nil || rte.str("relkind") != "v" || w.seen[uint32(oid)] {
				continue
			}
			w.seen[uint32(oid)] = true
			if vq := w.rules[uint32(oid)]; vq != nil {
				w.query(vq, output, column, strings.Trim(rte.child("eref").str("aliasname"), `"`))
			}
		default: // subqueries, functions in FROM, VALUES
			w.expr(rte.get("subquery"), output, column, via)
			w.expr(rte.get("functions"), output, column, via)
			w.expr(rte.get("values_lists"), output, column, via)
		}
	}
	for _, c := range q.list("cteList") {
		if cte, ok := c.(*node); ok {
			w.expr(cte.get("ctequery"), output, column, via)
		}
	}
	for _, f := range q.fields {
		switch f.name {
		case "targetList", "rtable", "cteList":
		default:
			w.expr(f.value, false, column, via)
		}
	}
}

func (w *walker) expr(v any, output bool, column, via string) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			w.expr(e, output, column, via)
		}
	case *node:
		switch x.name {
		case "QUERY": // a sublink's subselect
			w.query(x, output, column, via)
			return
		case "SQLVALUEFUNCTION":
			if op, err := strconv.Atoi(x.str("op")); err == nil {
				w.emit(use{view: w.view, sqlOp: op, output: output, column: column, via: via})
			}
		}
		for _, field := range []string{"funcid", "opfuncid", "winfnoid", "aggfnoid"} {
			if oid, err := strconv.ParseUint(x.str(field), 10, 32); err == nil && oid != 0 {
				w.emit(use{view: w.view, fn: uint32(oid), sqlOp: -1, output: output, column: column, via: via})
			}
		}
		for _, f := range x.fields {
			w.expr(f.value, output, column, via)
		}
	}
}

// indexAdvice suggests a unique index: the GROUP BY columns identify the
// rows of an aggregate view.
func indexAdvice(v *View, q *node) string {
	ident := v.Name
	if q != nil {
		refs := map[string]bool{}
		for _, g := range q.list("groupClause") {
			if gn, ok := g.(*node); ok {
				refs[gn.str("tleSortGroupRef")] = true
			}
		}
		var cols []string
		for _, t := range q.list("targetList") {
			if te, ok := t.(*node); ok && refs[te.str("ressortgroupref")] && te.str("resjunk") != "true" {
				cols = append(cols, pgx.Identifier{te.str("resname")}.Sanitize())
			}
		}
		if len(cols) > 0 && len(cols) == len(refs) {
			return fmt.Sprintf("Its GROUP BY columns identify its rows: CREATE UNIQUE INDEX ON %s (%s)", ident, strings.Join(cols, ", "))
		}
	}
	return fmt.Sprintf("Create one on the columns that identify a row: CREATE UNIQUE INDEX ON %s (...)", ident)
}
