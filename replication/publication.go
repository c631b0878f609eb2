package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table names a table for the publication.
type Table struct {
	OID          uint32
	Schema, Name string
}

func (t Table) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// publishAll is what the publication must publish: UPDATE and DELETE change
// views as much as INSERT, and a TRUNCATE empties them.
const publishAll = "insert, update, delete, truncate"

// SyncPublication makes the publication publish exactly tables, in tx:
// every operation, partitions under their own names (a TRUNCATE of one
// partition is only sent that way), no row filters, no column lists, no
// TABLES IN SCHEMA. It creates the publication when missing and repairs
// settings someone changed, with a warning through warn.
//
// The tables whose changes were not (all) streamed until now, those it
// adds and those whose filters or missing operations it repairs, are passed
// to beforeAlter (always called, maybe with none), in tx, before anything
// is altered, and returned. The caller commits tx.
//
// The caller must only pass tables whose updates and deletes can be
// published (a table without replica identity makes its views unmanaged;
// see "What it manages" in docs/how-it-works.md).
func SyncPublication(ctx context.Context, tx pgx.Tx, name string, tables []Table, beforeAlter func(changed []Table) error, warn func(msg string)) (changed []Table, err error) {
	pub := pgx.Identifier{name}.Sanitize()
	state, err := readPublication(ctx, tx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := beforeAlter(tables); err != nil {
			return nil, err
		}
		sql := "CREATE PUBLICATION " + pub
		if len(tables) > 0 {
			sql += " FOR TABLE " + joinIdents(tables)
		}
		sql += " WITH (publish = '" + publishAll + "', publish_via_partition_root = false)"
		if _, err := tx.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("create publication %s: %w%s", pub, err, privilegeHint(err))
		}
		return tables, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", pub, err)
	}
	if state.allTables {
		return nil, fmt.Errorf("publication %s is FOR ALL TABLES: mvrefresher manages its publication's tables itself; choose another publication name", pub)
	}

	// Tables published without every operation or with a filter missed
	// changes: their readers owe a refresh, like those of a new table.
	want := make(map[uint32]bool, len(tables))
	for _, t := range tables {
		want[t.OID] = true
	}
	have := make(map[uint32]bool, len(state.tables))
	var drop []uint32
	for _, oid := range state.tables {
		have[oid] = true
		if !want[oid] {
			drop = append(drop, oid)
		}
	}
	var added, filtered, present []Table // filtered: with a row filter or a column list
	for _, t := range tables {
		switch {
		case !have[t.OID]:
			added = append(added, t)
		case slices.Contains(state.filtered, t.OID):
			filtered = append(filtered, t)
			present = append(present, t)
		default:
			present = append(present, t)
		}
	}
	readd := filtered
	if len(filtered) > 0 {
		warn(fmt.Sprintf("publication %s had row filters or column lists on %s: removing them (they hide changes)", pub, joinIdents(filtered)))
	}
	if !state.publishesAll {
		warn(fmt.Sprintf("publication %s did not publish every operation: setting publish = '%s'", pub, publishAll))
		readd = present
	}
	changed = append(slices.Clip(added), readd...)
	if err := beforeAlter(changed); err != nil {
		return nil, err
	}

	// Drops first: PostgreSQL refuses publish_via_partition_root = false
	// while a partitioned table in the publication has a row filter or a
	// column list. All in tx, so no change is lost in between.
	if len(drop) > 0 {
		if err := dropTables(ctx, tx, pub, drop); err != nil {
			return nil, err
		}
	}
	var alters []string
	if len(filtered) > 0 {
		alters = append(alters, "ALTER PUBLICATION "+pub+" DROP TABLE "+joinIdents(filtered))
	}
	for _, schema := range state.schemas {
		warn(fmt.Sprintf("publication %s published TABLES IN SCHEMA %s: removing it (mvrefresher publishes the tables its views read, and only those)", pub, schema))
		alters = append(alters, "ALTER PUBLICATION "+pub+" DROP TABLES IN SCHEMA "+pgx.Identifier{schema}.Sanitize())
	}
	if !state.publishesAll || state.viaRoot {
		alters = append(alters, "ALTER PUBLICATION "+pub+" SET (publish = '"+publishAll+"', publish_via_partition_root = false)")
	}
	if add := append(slices.Clip(filtered), added...); len(add) > 0 {
		alters = append(alters, "ALTER PUBLICATION "+pub+" ADD TABLE "+joinIdents(add))
	}
	for _, sql := range alters {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("alter publication %s: %w%s", pub, err, privilegeHint(err))
		}
	}
	return changed, nil
}

type publicationState struct {
	allTables, viaRoot, publishesAll bool
	tables                           []uint32
	filtered                         []uint32 // tables with a row filter or a column list
	schemas                          []string // TABLES IN SCHEMA
}

func readPublication(ctx context.Context, tx pgx.Tx, name string) (publicationState, error) {
	var (
		st      publicationState
		version int
	)
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return st, err
	}
	// Row filters, column lists and TABLES IN SCHEMA came with PostgreSQL 15.
	filters, schemas := "'{}'::oid[]", "'{}'::text[]"
	if version >= 150000 {
		filters = "coalesce(array_agg(r.prrelid) FILTER (WHERE r.prqual IS NOT NULL OR r.prattrs IS NOT NULL), '{}')"
		schemas = "array(SELECT n.nspname::text FROM pg_publication_namespace pn JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE pn.pnpubid = p.oid)"
	}
	err := tx.QueryRow(ctx, `
		SELECT p.puballtables, p.pubviaroot, p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate,
		       coalesce(array_agg(r.prrelid) FILTER (WHERE r.prrelid IS NOT NULL), '{}'),
		       `+filters+`, `+schemas+`
		FROM pg_publication p LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid
		WHERE p.pubname = $1 GROUP BY p.oid`, name).
		Scan(&st.allTables, &st.viaRoot, &st.publishesAll, &st.tables, &st.filtered, &st.schemas)
	return st, err
}

// dropTables removes tables by OID: a table that left the publication may
// have been renamed.
func dropTables(ctx context.Context, tx pgx.Tx, pub string, oids []uint32) error {
	var names []string
	err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(format('%I.%I', n.nspname, c.relname)), '{}')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = ANY($1::oid[])`, oids).Scan(&names)
	if err != nil {
		return fmt.Errorf("read tables to drop from publication %s: %w", pub, err)
	}
	if len(names) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, "ALTER PUBLICATION "+pub+" DROP TABLE "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("drop tables from publication %s: %w", pub, err)
	}
	return nil
}

func joinIdents(tables []Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.ident()
	}
	return strings.Join(parts, ", ")
}
