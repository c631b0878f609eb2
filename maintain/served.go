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

// unserved says why recomputing the groups a change to s names would read
// the whole table, or "" when an index can bound that read: one on table
// oid leading with a key's expression (a plain column, an expression
// index's expression) or a time bucket's column. Without one, recomputing
// a few groups scans the table, which costs as much as recomputing the
// whole view or more (the incremental benchmark measured three times
// more): a change then recomputes the whole view at once, and says why.
func unserved(ctx context.Context, q catalog.Querier, oid uint32, s *Source) (string, error) {
	rows, err := q.Query(ctx, `SELECT pg_get_indexdef(indexrelid, 1, true) FROM pg_index
		WHERE indrelid = $1 AND indisvalid AND indpred IS NULL`, oid)
	if err != nil {
		return "", fmt.Errorf("read the indexes of %s: %w", s.Name, err)
	}
	leading, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("read the indexes of %s: %w", s.Name, err)
	}
	for i, l := range leading {
		leading[i] = normalizeExpr(l)
	}
	unqualify := regexp.MustCompile(`(^|[^A-Za-z0-9_$."])` + regexp.QuoteMeta(s.alias) + `\.`)
	var wanted []string
	for _, k := range s.Keys {
		expr := unqualify.ReplaceAllString(k.Expr, "$1")
		if k.bucket != nil {
			expr = strings.Trim(k.bucket.column, `"`) // quoted by pgx, and only shown
		}
		if slices.Contains(leading, normalizeExpr(expr)) {
			return "", nil
		}
		wanted = append(wanted, expr)
	}
	return fmt.Sprintf("no index leads with %s, so recomputing a group would read the whole table (an index on one of them lets its changes be followed row by row)",
		strings.Join(wanted, " or ")), nil
}

// normalizeExpr drops the white space, the identifier quotes and the outer
// parentheses of an expression, which pg_get_viewdef and pg_get_indexdef
// print differently.
func normalizeExpr(e string) string {
	e = strings.ReplaceAll(strings.Join(strings.Fields(e), ""), `"`, "")
	for strings.HasPrefix(e, "(") && strings.HasSuffix(e, ")") && balanced(e[1:len(e)-1]) {
		e = e[1 : len(e)-1]
	}
	return e
}

// balanced reports whether e's parentheses pair up, so that "(a)+(b)"
// is not taken for one parenthesized expression.
func balanced(e string) bool {
	depth := 0
	for _, c := range e {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}
