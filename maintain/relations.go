package maintain

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// relInfo is what the analysis needs of a relation the definition reads.
type relInfo struct {
	name, schema, relname string
	kind                  byte
	columns               map[int16]string  // attnum -> name
	types                 map[string]string // name -> format_type, with a COLLATE where not the type's
	primaryKey            []int16
	// identity lists the columns every leaf's replica identity carries in
	// an old row (none for NOTHING); identityAll is set when every leaf is
	// REPLICA IDENTITY FULL.
	identity     []string
	identityAll  bool
	identityText string
}

func readOutputs(ctx context.Context, q catalog.Querier, oid uint32, p *Plan) error {
	rows, err := q.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return fmt.Errorf("analyze %s: read its columns: %w", p.Table, err)
	}
	p.Columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Column, error) {
		var c Column
		return c, r.Scan(&c.Name, &c.Type)
	})
	if err != nil {
		return fmt.Errorf("analyze %s: read its columns: %w", p.Table, err)
	}
	return nil
}

// nondeterministic names the first function of fns whose value changes
// between two maintenances with no change in the WAL: a volatile one, or
// one that reads the clock.
func nondeterministic(ctx context.Context, q catalog.Querier, fns []uint32) (string, error) {
	if len(fns) == 0 {
		return "", nil
	}
	var name *string
	err := q.QueryRow(ctx, `SELECT min(p.oid::regprocedure::text) FROM pg_proc p
		WHERE p.oid = ANY($1) AND (p.provolatile = 'v' OR (p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY($2)))`,
		fns, timeFunctions).Scan(&name)
	if err != nil {
		return "", fmt.Errorf("read the functions its query calls: %w", err)
	}
	if name == nil {
		return "", nil
	}
	return *name, nil
}

func readRelations(ctx context.Context, q catalog.Querier, rels []catalog.ShapeRelation) (map[uint32]*relInfo, error) {
	out := map[uint32]*relInfo{}
	for _, sr := range rels {
		r := &relInfo{columns: map[int16]string{}, types: map[string]string{}}
		var kind string
		err := q.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname), n.nspname, c.relname, c.relkind::text,
			coalesce((SELECT array_agg(k ORDER BY o) FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY u(k, o)
			          WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, sr.OID).
			Scan(&r.name, &r.schema, &r.relname, &kind, &r.primaryKey)
		if err != nil {
			return nil, fmt.Errorf("read relation %d: %w", sr.OID, err)
		}
		r.kind = kind[0]
		// A column's collation where it is not its type's: the changed
		// rows' values are compared (a key expression, the filter) as the
		// view compares the column's.
		rows, err := q.Query(ctx, `SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
			|| CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
			        THEN ' COLLATE ' || format('%I.%I', cn.nspname, co.collname) ELSE '' END
			FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
			LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
			WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, sr.OID)
		if err != nil {
			return nil, fmt.Errorf("read the columns of %s: %w", r.name, err)
		}
		var num int16
		var name, typ string
		if _, err := pgx.ForEachRow(rows, []any{&num, &name, &typ}, func() error {
			r.columns[num], r.types[name] = name, typ
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read the columns of %s: %w", r.name, err)
		}
		if r.kind == catalog.KindTable || r.kind == catalog.KindPartitioned {
			if err := readIdentity(ctx, q, sr.OID, r); err != nil {
				return nil, err
			}
		}
		out[sr.OID] = r
	}
	return out, nil
}

// readIdentity reads which columns an old row carries: for a partitioned
// table, those every leaf's identity carries (changes come from leaves).
func readIdentity(ctx context.Context, q catalog.Querier, oid uint32, r *relInfo) error {
	rows, err := q.Query(ctx, `
		SELECT c.relreplident::text,
		       coalesce((SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
		                 WHERE i.indrelid = c.oid AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END), '{}')
		FROM pg_class c
		WHERE c.oid = $1 AND c.relkind = 'r'
		   OR c.relkind = 'r' AND c.oid IN (SELECT relid FROM pg_partition_tree($1) WHERE isleaf)`, oid)
	if err != nil {
		return fmt.Errorf("read the replica identity of %s: %w", r.name, err)
	}
	var ident string
	var cols []string
	first := true
	kinds := map[string]bool{}
	r.identityAll = true
	if _, err := pgx.ForEachRow(rows, []any{&ident, &cols}, func() error {
		kinds[ident] = true
		if ident != "f" {
			r.identityAll = false
			if first {
				r.identity = slices.Clone(cols)
			} else {
				r.identity = slices.DeleteFunc(r.identity, func(c string) bool { return !slices.Contains(cols, c) })
			}
			first = false
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read the replica identity of %s: %w", r.name, err)
	}
	slices.Sort(r.identity)
	var names []string
	for k, name := range map[string]string{"d": "DEFAULT", "f": "FULL", "i": "USING INDEX", "n": "NOTHING"} {
		if kinds[k] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	r.identityText = "REPLICA IDENTITY " + strings.Join(names, "/")
	if !r.identityAll && len(r.identity) > 0 {
		r.identityText += " (" + strings.Join(r.identity, ", ") + ")"
	}
	return nil
}
