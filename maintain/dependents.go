package maintain

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// dependent is a view or materialized view built on the converted
// relation, directly or through other views: a conversion drops it before
// the relation and re-creates it, as it was, after.
type dependent struct {
	oid          uint32
	name         string // format('%I.%I')
	materialized bool
	definition   string
	storage      storage // a view's options (security_barrier, ...) too
	populated    bool
	props        properties
}

// findDependents reads the dependents of the relation oid, each after the
// ones it is built on, and refuses when one cannot be re-created.
func findDependents(ctx context.Context, tx pgx.Tx, oid uint32) ([]dependent, error) {
	type found struct {
		dependent
		relkind, owner, extras string
		actsAsOwner            bool
	}
	// A view or materialized view depends on what it reads through its
	// _RETURN rule; depth is its longest path from oid, so that sorting by
	// it puts every dependent after the ones it reads. Views replaced to
	// read each other form a cycle PostgreSQL only reports when they are
	// queried; the depth bound ends the recursion there, and dropping
	// them fails.
	rows, err := tx.Query(ctx, `
WITH RECURSIVE dependents(oid, depth) AS (
  SELECT r.ev_class, 1
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.refobjid = $1 AND r.ev_class <> $1
  UNION
  SELECT r.ev_class, p.depth + 1
    FROM dependents p JOIN pg_class pc ON pc.oid = p.oid AND pc.relkind IN ('v', 'm')
    JOIN pg_depend d ON d.refobjid = p.oid AND d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid
   WHERE r.ev_class <> p.oid AND p.depth < 100
)
SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relkind = 'm',
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) ELSE '' END, c.relispopulated,
       coalesce((SELECT string_agg(format('%s=%L', o.option_name, o.option_value), ', ') FROM pg_options_to_table(c.reloptions) o), ''),
       coalesce((SELECT format('%I', t.spcname) FROM pg_tablespace t WHERE t.oid = c.reltablespace), ''),
       format('%I', pg_get_userbyid(c.relowner)), pg_has_role(c.relowner, 'USAGE'),
       concat_ws('; ',
         (SELECT 'rules ' || string_agg(format('%I', r.rulename), ', ') FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'),
         (SELECT 'triggers ' || string_agg(format('%I', t.tgname), ', ') FROM pg_trigger t WHERE t.tgrelid = c.oid),
         (SELECT 'column defaults' FROM pg_attrdef a WHERE a.adrelid = c.oid LIMIT 1))
  FROM (SELECT oid, max(depth) AS depth FROM dependents GROUP BY oid) dep
  JOIN pg_class c ON c.oid = dep.oid JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY dep.depth, c.oid`, oid)
	if err != nil {
		return nil, fmt.Errorf("find the views built on it: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
		var f found
		return f, r.Scan(&f.oid, &f.name, &f.relkind, &f.materialized, &f.definition, &f.populated,
			&f.storage.options, &f.storage.tablespace, &f.owner, &f.actsAsOwner, &f.extras)
	})
	if err != nil {
		return nil, fmt.Errorf("find the views built on it: %w", err)
	}
	deps := make([]dependent, 0, len(all))
	for _, f := range all {
		switch {
		case f.relkind != "v" && f.relkind != "m":
			return nil, fmt.Errorf("%w: a rule of %s (%s) refers to it", ErrRefused, f.name, relkindNames[f.relkind])
		case !f.actsAsOwner:
			return nil, fmt.Errorf("%w: %s is built on it and would have to be re-created, but its owner %s is a role the current role is not a member of",
				ErrRefused, f.name, f.owner)
		case f.extras != "":
			return nil, fmt.Errorf("%w: %s is built on it and would have to be re-created, but it has %s, which the conversion does not carry over",
				ErrRefused, f.name, f.extras)
		}
		if f.props, err = captureProperties(ctx, tx, f.oid); err != nil {
			return nil, fmt.Errorf("read %s, built on it: %w", f.name, err)
		}
		f.definition = trimDefinition(f.definition)
		deps = append(deps, f.dependent)
	}
	return deps, nil
}

// dropStatements drop deps, each before the ones it is built on.
func dropStatements(deps []dependent) []string {
	stmts := make([]string, 0, len(deps))
	for _, d := range slices.Backward(deps) {
		stmts = append(stmts, "DROP "+d.kind()+" "+d.name)
	}
	return stmts
}

// recreateStatements create deps again as they were, each after the ones
// it is built on.
func recreateStatements(deps []dependent) []string {
	var stmts []string
	for _, d := range deps {
		create := "CREATE " + d.kind() + " " + d.name + d.storage.clause() + " AS " + d.definition
		if d.materialized {
			if d.populated {
				create += " WITH DATA"
			} else {
				create += " WITH NO DATA"
			}
		}
		stmts = append(stmts, create)
		stmts = append(stmts, d.props.restoreStatements(d.kind(), d.name, "")...)
	}
	return stmts
}

func (d dependent) kind() string {
	if d.materialized {
		return "MATERIALIZED VIEW"
	}
	return "VIEW"
}
