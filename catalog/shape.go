package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Shape is what incremental maintenance needs to know of a view's query,
// read from its rewrite rule.
type Shape struct {
	// Columns are the view's output columns, in order.
	Columns []ShapeColumn
	// Grouped: the query has a GROUP BY (without grouping sets).
	Grouped bool
	// Unsupported lists what the query has that incremental maintenance
	// cannot follow ("a window function", "LIMIT", ...), empty when none.
	Unsupported []string
	// Relations are the relations the query's FROM names directly (not
	// through subqueries).
	Relations []ShapeRelation
	// Functions are the functions and operators' functions the query
	// calls; TimeValues is set when it reads CURRENT_DATE and the like.
	Functions  []uint32
	TimeValues bool
	// Filters are the top-level conjuncts of the query's WHERE (the
	// arguments of its AND, or the WHERE itself), in the order
	// pg_get_viewdef prints them.
	Filters []ShapeFilter
}

// ShapeFilter is one conjunct of the query's WHERE.
type ShapeFilter struct {
	// Reads maps each relation of Shape.Relations the conjunct reads to
	// the attribute numbers it reads; nil when it reads a column that does
	// not stand for a relation's (a FULL JOIN USING column).
	Reads map[uint32][]int16
}

// ShapeColumn is one output column.
type ShapeColumn struct {
	Name string
	// GroupKey: the column is one of the GROUP BY's expressions.
	GroupKey bool
	// Reads maps each relation of Shape.Relations the column's expression
	// reads (outside aggregates) to the attribute numbers it reads.
	Reads map[uint32][]int16
}

// ShapeRelation is a relation in the query's FROM.
type ShapeRelation struct {
	OID  uint32
	Kind byte
	// Nullable: the relation is on the nullable side of an outer join, so
	// its rows changing can add or remove rows padded with nulls.
	Nullable bool
	// Occurrences counts how many times the relation appears in the FROM.
	Occurrences int
}

// ReadShape reads the shape of the view (plain or materialized) oid.
func ReadShape(ctx context.Context, q Querier, oid uint32) (*Shape, error) {
	var action string
	err := q.QueryRow(ctx, `SELECT ev_action::text FROM pg_rewrite WHERE ev_class = $1 AND rulename = '_RETURN'`, oid).Scan(&action)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("relation %d is not a view", oid)
	}
	if err != nil {
		return nil, fmt.Errorf("read the query of relation %d: %w", oid, err)
	}
	tree, err := parseNodeTree(action)
	if err != nil {
		return nil, fmt.Errorf("parse the query of relation %d: %w", oid, err)
	}
	l, ok := tree.([]any)
	if !ok || len(l) != 1 {
		return nil, fmt.Errorf("the rule of relation %d holds %d queries", oid, len(l))
	}
	qn, ok := l[0].(*node)
	if !ok || qn.name != "QUERY" {
		return nil, fmt.Errorf("the rule of relation %d holds no query", oid)
	}
	return shapeOf(qn), nil
}

func shapeOf(q *node) *Shape {
	s := &Shape{}
	flag := func(field, what string) {
		if q.str(field) == "true" {
			s.Unsupported = append(s.Unsupported, what)
		}
	}
	flag("hasWindowFuncs", "a window function")
	flag("hasTargetSRFs", "a set-returning function in the output")
	flag("hasSubLinks", "a subquery in an expression")
	flag("hasDistinctOn", "DISTINCT ON")
	if q.get("groupingSets") != nil {
		s.Unsupported = append(s.Unsupported, "grouping sets")
	}
	if q.get("setOperations") != nil {
		s.Unsupported = append(s.Unsupported, "UNION, INTERSECT or EXCEPT")
	}
	if q.get("cteList") != nil {
		s.Unsupported = append(s.Unsupported, "a WITH query")
	}
	if q.get("limitCount") != nil || q.get("limitOffset") != nil {
		s.Unsupported = append(s.Unsupported, "LIMIT or OFFSET")
	}
	if q.get("distinctClause") != nil && q.str("hasDistinctOn") != "true" {
		s.Unsupported = append(s.Unsupported, "SELECT DISTINCT")
	}
	s.Grouped = q.get("groupClause") != nil && q.get("groupingSets") == nil

	rtable := q.list("rtable")
	rte := func(index int) *node {
		if index < 1 || index > len(rtable) {
			return nil
		}
		n, _ := rtable[index-1].(*node)
		return n
	}
	nullable := map[int]bool{}
	var walkJoin func(v any, underNull bool)
	walkJoin = func(v any, underNull bool) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walkJoin(e, underNull)
			}
		case *node:
			switch x.name {
			case "FROMEXPR":
				walkJoin(x.get("fromlist"), underNull)
			case "JOINEXPR":
				jt := x.str("jointype")
				walkJoin(x.get("larg"), underNull || jt == "2" || jt == "3")
				walkJoin(x.get("rarg"), underNull || jt == "1" || jt == "2")
			case "RANGETBLREF":
				if i, err := strconv.Atoi(x.str("rtindex")); err == nil {
					nullable[i] = underNull
					if r := rte(i); r != nil && r.str("rtekind") != "0" {
						s.Unsupported = append(s.Unsupported, "a subquery or function in FROM")
					}
				}
			}
		}
	}
	walkJoin(q.get("jointree"), false)
	relOf := map[int]uint32{} // range table index -> relation OID
	for i := range rtable {
		r := rte(i + 1)
		if r == nil || r.str("rtekind") != "0" || r.str("inFromCl") != "true" {
			continue
		}
		oid, err := strconv.ParseUint(r.str("relid"), 10, 32)
		if err != nil {
			continue
		}
		relOf[i+1] = uint32(oid)
		at := slices.IndexFunc(s.Relations, func(sr ShapeRelation) bool { return sr.OID == uint32(oid) })
		if at < 0 {
			kind := r.str("relkind")
			if len(kind) == 1 {
				s.Relations = append(s.Relations, ShapeRelation{OID: uint32(oid), Kind: kind[0]})
			} else {
				s.Relations = append(s.Relations, ShapeRelation{OID: uint32(oid), Kind: 0})
			}
			at = len(s.Relations) - 1
		}
		s.Relations[at].Occurrences++
		s.Relations[at].Nullable = s.Relations[at].Nullable || nullable[i+1]
	}

	if jt, ok := q.get("jointree").(*node); ok {
		s.Filters = filtersOf(jt.get("quals"), rte, relOf)
	}

	groupRefs := map[string]bool{}
	for _, g := range q.list("groupClause") {
		if gn, ok := g.(*node); ok {
			groupRefs[gn.str("tleSortGroupRef")] = true
		}
	}
	for _, t := range q.list("targetList") {
		te, ok := t.(*node)
		if !ok || te.str("resjunk") == "true" {
			continue
		}
		col := ShapeColumn{Name: te.str("resname"), GroupKey: groupRefs[te.str("ressortgroupref")], Reads: map[uint32][]int16{}}
		if !addReads(te.get("expr"), rte, relOf, col.Reads) {
			s.Unsupported = append(s.Unsupported, fmt.Sprintf("column %q reads a column of a join that is not a plain column", col.Name))
		}
		s.Columns = append(s.Columns, col)
	}
	hidden := 0
	for ref := range groupRefs {
		if !slices.ContainsFunc(q.list("targetList"), func(t any) bool {
			te, ok := t.(*node)
			return ok && te.str("resjunk") != "true" && te.str("ressortgroupref") == ref
		}) {
			hidden++
		}
	}
	if hidden > 0 {
		s.Unsupported = append(s.Unsupported, "a GROUP BY expression that is not one of its columns")
	}
	if q.str("hasAggs") == "true" && !s.Grouped {
		s.Unsupported = append(s.Unsupported, "an aggregate without GROUP BY")
	}
	s.collectFunctions(q)
	slices.Sort(s.Unsupported)
	s.Unsupported = slices.Compact(s.Unsupported)
	return s
}

// filtersOf splits quals, a WHERE, into its top-level conjuncts.
func filtersOf(quals any, rte func(int) *node, relOf map[int]uint32) []ShapeFilter {
	if quals == nil {
		return nil
	}
	conjuncts := []any{quals}
	if b, ok := quals.(*node); ok && b.name == "BOOLEXPR" && b.str("boolop") == "and" {
		conjuncts = b.list("args")
	}
	filters := make([]ShapeFilter, len(conjuncts))
	for i, c := range conjuncts {
		reads := map[uint32][]int16{}
		if addReads(c, rte, relOf, reads) {
			filters[i].Reads = reads
		}
	}
	return filters
}

// addReads adds the relation columns expression v reads outside aggregates
// to reads. A column of a join is followed to the relation column it
// stands for; false when it stands for an expression (FULL JOIN USING).
func addReads(v any, rte func(int) *node, relOf map[int]uint32, reads map[uint32][]int16) bool {
	switch x := v.(type) {
	case []any:
		ok := true
		for _, e := range x {
			ok = addReads(e, rte, relOf, reads) && ok
		}
		return ok
	case *node:
		switch x.name {
		case "AGGREF", "WINDOWFUNC":
			return true
		case "VAR":
			if x.str("varlevelsup") != "0" {
				return true
			}
			varno, err1 := strconv.Atoi(x.str("varno"))
			attno, err2 := strconv.Atoi(x.str("varattno"))
			if err1 != nil || err2 != nil {
				return false
			}
			if oid, ok := relOf[varno]; ok {
				if !slices.Contains(reads[oid], int16(attno)) {
					reads[oid] = append(reads[oid], int16(attno))
				}
				return true
			}
			r := rte(varno)
			if r == nil || attno <= 0 {
				return false
			}
			switch r.str("rtekind") {
			case "2": // a join's column
				aliases := r.list("joinaliasvars")
				if attno <= len(aliases) {
					if av, ok := aliases[attno-1].(*node); ok && av.name == "VAR" {
						return addReads(av, rte, relOf, reads)
					}
				}
			case "9": // PostgreSQL 18's RTE_GROUP: a GROUP BY expression
				if exprs := r.list("groupexprs"); attno <= len(exprs) {
					return addReads(exprs[attno-1], rte, relOf, reads)
				}
			}
			return false
		}
		ok := true
		for _, f := range x.fields {
			ok = addReads(f.value, rte, relOf, reads) && ok
		}
		return ok
	}
	return true
}

// collectFunctions records every function the query calls.
func (s *Shape) collectFunctions(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			s.collectFunctions(e)
		}
	case *node:
		if op, err := strconv.Atoi(x.str("op")); x.name == "SQLVALUEFUNCTION" && err == nil && op < len(sqlValueFunctions) {
			s.TimeValues = true
		}
		for _, field := range []string{"funcid", "opfuncid", "winfnoid", "aggfnoid"} {
			if oid, err := strconv.ParseUint(x.str(field), 10, 32); err == nil && oid != 0 && !slices.Contains(s.Functions, uint32(oid)) {
				s.Functions = append(s.Functions, uint32(oid))
			}
		}
		for _, f := range x.fields {
			s.collectFunctions(f.value)
		}
	}
}
