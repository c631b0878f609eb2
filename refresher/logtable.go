package refresher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// logColumns are the refresh log's columns after the seed's two (mv_name,
// refreshed_at); an existing seed table gets them added.
var logColumns = []struct{ name, def string }{
	{"duration_ms", "double precision"},
	{"lsn", "pg_lsn"},
	{`"concurrently"`, "boolean"},
	{"rows_inserted", "bigint"},
	{"rows_deleted", "bigint"},
	{"refresh_count", "bigint NOT NULL DEFAULT 0"},
	{"status", "text NOT NULL DEFAULT 'ok'"},
	{"error", "text"},
	{"attempted_at", "timestamptz NOT NULL DEFAULT now()"},
}

// EnsureLogTable creates the refresh log, or adds the missing columns to an
// existing one (such as the seed's two-column table).
func EnsureLogTable(ctx context.Context, pool *pgxpool.Pool, schema, name string) error {
	ident := pgx.Identifier{schema, name}.Sanitize()
	var exists bool
	var have []string
	err := pool.QueryRow(ctx, `
		SELECT to_regclass($1) IS NOT NULL,
		       coalesce((SELECT array_agg(attname::text) FROM pg_attribute
		                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped), '{}')`,
		ident).Scan(&exists, &have)
	if err != nil {
		return fmt.Errorf("read refresh log table %s: %w", ident, err)
	}
	if !exists {
		sql := "CREATE TABLE IF NOT EXISTS " + ident + " (mv_name text PRIMARY KEY, refreshed_at timestamptz"
		for _, c := range logColumns {
			sql += ", " + c.name + " " + c.def
		}
		if _, err := pool.Exec(ctx, sql+")"); err != nil {
			return fmt.Errorf("create refresh log table %s: %w", ident, err)
		}
		return nil
	}
	var add string
	for _, c := range logColumns {
		if !slices.Contains(have, strings.Trim(c.name, `"`)) {
			if add != "" {
				add += ", "
			}
			add += "ADD COLUMN IF NOT EXISTS " + c.name + " " + c.def
		}
	}
	if add == "" {
		return nil
	}
	if _, err := pool.Exec(ctx, "ALTER TABLE "+ident+" "+add); err != nil {
		return fmt.Errorf("add columns to refresh log table %s: %w", ident, err)
	}
	return nil
}

// Owed lists the views among names that owe a refresh the WAL will not
// bring: no successful refresh by mvrefresher in the log, a mark by
// MarkOwed (lsn NULL), or a last attempt that failed (its retry lived in
// memory only). They get a startup refresh; a crash before it leaves them in
// this list for the next start.
func Owed(ctx context.Context, q Querier, schema, table string, names []string) ([]string, error) {
	ident := pgx.Identifier{schema, table}.Sanitize()
	rows, err := q.Query(ctx, `SELECT n FROM unnest($1::text[]) n
		WHERE NOT EXISTS (SELECT 1 FROM `+ident+` l WHERE l.mv_name = n AND l.lsn IS NOT NULL AND l.status = 'ok')
		ORDER BY n`, names)
	if err != nil {
		return nil, fmt.Errorf("read refresh log %s: %w", ident, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read refresh log %s: %w", ident, err)
	}
	return out, nil
}

// ErrRefreshRunning means MarkOwed found a refresh of one of its views
// running: roll back and try again later.
var ErrRefreshRunning = errors.New("a refresh of a view to mark is running")

// MarkOwed records in the log, by clearing their lsn, that the views owe a
// refresh the WAL will not bring: the slot is about to be created, a source
// joins the publication, a partition was detached, a base view caught up on
// a debt of its own. Owed then lists them until each has refreshed, so a
// crash before that refresh cannot lose it. Views with no log row are owed
// already.
//
// While refreshes may run (lock), the mark first takes each view's
// advisory lock (the one every refresh holds), or for more than
// lockEachUpTo views the one lock every refresh holds shared, so that no
// refresh running now clears it with a snapshot older than the reason, and
// refreshes starting later wait for tx to commit. It does not wait for a running
// refresh, which would keep the other locks and make later refreshes time
// out: it fails with ErrRefreshRunning instead. Call it in the transaction
// that makes the reason happen, where there is one.
func MarkOwed(ctx context.Context, tx pgx.Tx, schema, table string, views []string, lock bool) error {
	if len(views) == 0 {
		return nil
	}
	ident := pgx.Identifier{schema, table}.Sanitize()
	locked := true
	if lock {
		if err := lockViews(ctx, tx, views, &locked); err != nil {
			return err
		}
	}
	if !locked {
		return ErrRefreshRunning
	}
	if _, err := tx.Exec(ctx, "UPDATE "+ident+" SET lsn = NULL WHERE mv_name = ANY($1) AND lsn IS NOT NULL", views); err != nil {
		return fmt.Errorf("mark %d views as owing a refresh in %s: %w", len(views), ident, err)
	}
	return nil
}

// lockEachUpTo is the most views MarkOwed locks one by one. Each lock takes
// a slot in the server's lock table (max_locks_per_transaction per
// connection, shared), and thousands would fill it (53200).
const lockEachUpTo = 64

func lockViews(ctx context.Context, tx pgx.Tx, views []string, locked *bool) error {
	if len(views) > lockEachUpTo {
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1, 0)", allViewsLockClass).Scan(locked); err != nil {
			return fmt.Errorf("lock %d views against refreshes: %w", len(views), err)
		}
		return nil
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(bool_and(pg_try_advisory_xact_lock($1, k)), true)
		FROM (SELECT DISTINCT hashtext(v) AS k FROM unnest($2::text[]) v) keys`,
		advisoryLockClass, views).Scan(locked); err != nil {
		return fmt.Errorf("lock %d views against refreshes: %w", len(views), err)
	}
	return nil
}
