package maintain

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// properties is what a relation carries besides its definition and rows:
// DROP takes it along, and a conversion gives it back to the relation it
// creates in its place. Every field is SQL, quoted by the server.
type properties struct {
	owner string
	// explicitACL is set when the relation's privileges were ever granted
	// or revoked: then grants, the owner's own among them, replace the
	// default privileges rather than add to them.
	explicitACL    bool
	grants         []grant
	comment        string // a literal, or empty for none
	columnComments []columnComment
	indexes        []index
}

// grant is one privilege granted on a relation or one of its columns.
type grant struct {
	privilege, column, grantee string
	grantable                  bool
}

// statement grants g again on rel. The grantor is the owner, as for any
// grant made by the owner or a member of its role: a grant someone else
// made with a grant option comes back as the owner's.
func (g grant) statement(rel string) string {
	s := "GRANT " + g.privilege
	if g.column != "" {
		s += " (" + g.column + ")"
	}
	s += " ON TABLE " + rel + " TO " + g.grantee
	if g.grantable {
		s += " WITH GRANT OPTION"
	}
	return s
}

type columnComment struct{ column, comment string }

type index struct {
	name          string // unqualified, as pg_get_indexdef creates it
	qualifiedName string
	definition    string
	comment       string // a literal, or empty for none
}

// captureProperties reads the properties of the relation oid.
func captureProperties(ctx context.Context, tx pgx.Tx, oid uint32) (properties, error) {
	var p properties
	if err := tx.QueryRow(ctx, `
SELECT format('%I', pg_get_userbyid(c.relowner)), c.relacl IS NOT NULL,
       coalesce(quote_literal(obj_description(c.oid, 'pg_class')), '')
  FROM pg_class c WHERE c.oid = $1`, oid).Scan(&p.owner, &p.explicitACL, &p.comment); err != nil {
		return properties{}, fmt.Errorf("read the owner and comment: %w", err)
	}
	var err error
	if p.grants, err = collect(ctx, tx, `
SELECT g.privilege_type, '', `+granteeSQL+`, g.is_grantable
  FROM pg_class c, aclexplode(c.relacl) WITH ORDINALITY g(grantor, grantee, privilege_type, is_grantable, n)
 WHERE c.oid = $1
UNION ALL
SELECT privilege_type, column_name, grantee, is_grantable FROM (
  SELECT g.privilege_type, format('%I', a.attname) AS column_name, `+granteeSQL+` AS grantee, g.is_grantable, a.attnum, g.n
    FROM pg_attribute a, aclexplode(a.attacl) WITH ORDINALITY g(grantor, grantee, privilege_type, is_grantable, n)
   WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
   ORDER BY a.attnum, g.n) column_grants`, oid, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.privilege, &g.column, &g.grantee, &g.grantable)
	}); err != nil {
		return properties{}, fmt.Errorf("read the privileges: %w", err)
	}
	if p.columnComments, err = collect(ctx, tx, `
SELECT format('%I', a.attname), quote_literal(col_description(a.attrelid, a.attnum))
  FROM pg_attribute a
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND col_description(a.attrelid, a.attnum) IS NOT NULL
 ORDER BY a.attnum`, oid, func(r pgx.CollectableRow) (columnComment, error) {
		var c columnComment
		return c, r.Scan(&c.column, &c.comment)
	}); err != nil {
		return properties{}, fmt.Errorf("read the column comments: %w", err)
	}
	if p.indexes, err = collect(ctx, tx, `
SELECT format('%I', ic.relname), format('%I.%I', n.nspname, ic.relname), pg_get_indexdef(i.indexrelid),
       coalesce(quote_literal(obj_description(i.indexrelid, 'pg_class')), '')
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
 WHERE i.indrelid = $1
 ORDER BY ic.relname`, oid, func(r pgx.CollectableRow) (index, error) {
		var ix index
		return ix, r.Scan(&ix.name, &ix.qualifiedName, &ix.definition, &ix.comment)
	}); err != nil {
		return properties{}, fmt.Errorf("read the indexes: %w", err)
	}
	return p, nil
}

// granteeSQL names the grantee of an aclexplode row g as GRANT takes it.
const granteeSQL = `CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE format('%I', pg_get_userbyid(g.grantee)) END`

func collect[T any](ctx context.Context, tx pgx.Tx, sql string, oid uint32, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := tx.Query(ctx, sql, oid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// restoreStatements give p to the relation name of kind (TABLE, VIEW,
// MATERIALIZED VIEW), created by the current role, with its rows in place
// (an index is cheaper to build at once). An index named skipIndex is left
// out.
func (p properties) restoreStatements(kind, name, skipIndex string) []string {
	stmts := []string{"ALTER " + kind + " " + name + " OWNER TO " + p.owner}
	if p.explicitACL {
		stmts = append(stmts, "REVOKE ALL ON TABLE "+name+" FROM "+p.owner)
	}
	for _, g := range p.grants {
		stmts = append(stmts, g.statement(name))
	}
	if p.comment != "" {
		stmts = append(stmts, "COMMENT ON "+kind+" "+name+" IS "+p.comment)
	}
	for _, c := range p.columnComments {
		stmts = append(stmts, "COMMENT ON COLUMN "+name+"."+c.column+" IS "+c.comment)
	}
	for _, ix := range p.indexes {
		if ix.name == skipIndex {
			continue
		}
		stmts = append(stmts, ix.definition)
		if ix.comment != "" {
			stmts = append(stmts, "COMMENT ON INDEX "+ix.qualifiedName+" IS "+ix.comment)
		}
	}
	return stmts
}
