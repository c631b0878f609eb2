package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Table names a table for the publication.
type Table struct {
	OID          uint32
	Schema, Name string
}

func (t Table) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// SyncPublication makes the publication publish exactly tables (inserts,
// updates, deletes and truncates; partitions under their own names, because a
// TRUNCATE of one partition is only sent that way). It creates the
// publication when missing and reports the tables it added, whose earlier
// changes were never streamed.
//
// The caller must only pass tables whose updates and deletes can be
// published: see guarantee 3 in DESIGN.md.
func SyncPublication(ctx context.Context, pool *pgxpool.Pool, name string, tables []Table) (added []Table, err error) {
	pub := pgx.Identifier{name}.Sanitize()
	var (
		allTables, viaRoot bool
		current            []uint32
	)
	err = pool.QueryRow(ctx, `
		SELECT p.puballtables, p.pubviaroot,
		       coalesce(array_agg(r.prrelid) FILTER (WHERE r.prrelid IS NOT NULL), '{}')
		FROM pg_publication p LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid
		WHERE p.pubname = $1 GROUP BY p.oid`, name).Scan(&allTables, &viaRoot, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		sql := "CREATE PUBLICATION " + pub
		if len(tables) > 0 {
			sql += " FOR TABLE " + joinIdents(tables)
		}
		sql += " WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = false)"
		if _, err := pool.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("create publication %s: %w%s", pub, err, privilegeHint(err))
		}
		return tables, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", pub, err)
	}
	if allTables {
		return nil, fmt.Errorf("publication %s is FOR ALL TABLES: mvrefresher manages its publication's tables itself; choose another publication name", pub)
	}
	if viaRoot {
		if _, err := pool.Exec(ctx, "ALTER PUBLICATION "+pub+" SET (publish_via_partition_root = false)"); err != nil {
			return nil, fmt.Errorf("alter publication %s: %w", pub, err)
		}
	}
	want := make(map[uint32]bool, len(tables))
	for _, t := range tables {
		want[t.OID] = true
	}
	have := make(map[uint32]bool, len(current))
	var drop []string
	for _, oid := range current {
		have[oid] = true
		if !want[oid] {
			drop = append(drop, fmt.Sprint(oid))
		}
	}
	for _, t := range tables {
		if !have[t.OID] {
			added = append(added, t)
		}
	}
	if len(added) > 0 {
		if _, err := pool.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE "+joinIdents(added)); err != nil {
			return nil, fmt.Errorf("add tables to publication %s: %w%s", pub, err, privilegeHint(err))
		}
	}
	if len(drop) > 0 {
		// Dropped by OID: a table that left the publication may have been renamed.
		var names []string
		err := pool.QueryRow(ctx, `SELECT array_agg(format('%I.%I', n.nspname, c.relname))
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = ANY($1::oid[])`, "{"+strings.Join(drop, ",")+"}").Scan(&names)
		if err != nil {
			return nil, fmt.Errorf("read tables to drop from publication %s: %w", pub, err)
		}
		if len(names) > 0 {
			if _, err := pool.Exec(ctx, "ALTER PUBLICATION "+pub+" DROP TABLE "+strings.Join(names, ", ")); err != nil {
				return nil, fmt.Errorf("drop tables from publication %s: %w", pub, err)
			}
		}
	}
	return added, nil
}

func joinIdents(tables []Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.ident()
	}
	return strings.Join(parts, ", ")
}
