package refresher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/maintain"
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
	// view_oid is the view the last successful refresh was of: a view
	// dropped and created again under its name is another view.
	{"view_oid", "oid"},
	// owed_xid is the transaction that marked the view owed (MarkOwed): a
	// refresh whose snapshot does not see it cannot settle the debt.
	{"owed_xid", "xid8"},
	// A view maintained incrementally: how its last maintenance went
	// (incremental or full, and why full), the view rows recomputed and
	// the rows it updated (inserted and deleted are in rows_*).
	{"maintenance", "text"},
	{"full_reason", "text"},
	{"groups_recomputed", "bigint"},
	{"rows_updated", "bigint"},
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Log is the refresh log table, one row per view. It owns every statement
// on the table: creating it, the owed marks, recording refreshes and
// reading them back.
type Log struct {
	schema, name string
	ident        string // quoted
}

// NewLog is the log table schema.name (config.ParseTableName splits the
// configured name).
func NewLog(schema, name string) Log {
	return Log{schema: schema, name: name, ident: pgx.Identifier{schema, name}.Sanitize()}
}

// String is the table's quoted name.
func (l Log) String() string { return l.ident }

// Is reports whether schema.relname is the log table.
func (l Log) Is(schema, relname string) bool {
	return l.ident != "" && schema == l.schema && relname == l.name
}

// CheckCreatable fails, saying the fix, when the refresh log does not exist
// and the role cannot create it: its schema is missing, or the role lacks
// CREATE on it (PostgreSQL 15 and later grant none on public).
func (l Log) CheckCreatable(ctx context.Context, q Querier) error {
	var exists, schemaExists, canCreate bool
	var role, schema string // quoted where needed
	err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, n.oid IS NOT NULL,
		       coalesce(has_schema_privilege(n.oid, 'CREATE'), false), quote_ident(current_user), quote_ident($2::text)
		FROM (SELECT) one LEFT JOIN pg_namespace n ON n.nspname = $2::text`, l.ident, l.schema).Scan(&exists, &schemaExists, &canCreate, &role, &schema)
	if err != nil {
		return fmt.Errorf("read refresh log table %s: %w", l.ident, err)
	}
	switch {
	case exists || (schemaExists && canCreate):
		return nil
	case !schemaExists:
		return fmt.Errorf("cannot create refresh log table %s: schema %s does not exist: CREATE SCHEMA %s AUTHORIZATION %s, or set refresh_log_table to a table in a schema the role owns",
			l.ident, schema, schema, role)
	}
	return fmt.Errorf("cannot create refresh log table %s: the role %s lacks CREATE on schema %s (PostgreSQL 15 and later no longer grant it on public to every role): "+
		"GRANT CREATE ON SCHEMA %s TO %s, or set refresh_log_table to a table in a schema the role owns (CREATE SCHEMA mvrefresher AUTHORIZATION %s; refresh_log_table: mvrefresher.%s)",
		l.ident, role, schema, schema, role, role, l.name)
}

// logLockClass is the first key of the advisory lock Ensure takes on the
// refresh log's name ("mvr\x01" as an int4; advisoryLockClass is the
// views').
const logLockClass int32 = 0x6d767201

// Ensure creates the refresh log, or adds the missing columns to an
// existing one (such as the seed's two-column table). The two instances of
// an HA pair starting together would both find it missing, and CREATE
// TABLE IF NOT EXISTS fails when another session creates the table at the
// same moment (on the table's row type): they take turns.
func (l Log) Ensure(ctx context.Context, pool *pgxpool.Pool) error {
	if err := l.CheckCreatable(ctx, pool); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", logLockClass, l.ident); err != nil {
			return fmt.Errorf("lock the refresh log table's name %s: %w", l.ident, err)
		}
		return l.ensure(ctx, tx)
	})
}

func (l Log) ensure(ctx context.Context, tx pgx.Tx) error {
	ident := l.ident
	var exists bool
	var have []string
	err := tx.QueryRow(ctx, `
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
		if _, err := tx.Exec(ctx, sql+")"); err != nil {
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
	if _, err := tx.Exec(ctx, "ALTER TABLE "+ident+" "+add); err != nil {
		return fmt.Errorf("add columns to refresh log table %s: %w", ident, err)
	}
	return nil
}

// Owed lists the views among names that owe a refresh the WAL will not
// bring: no successful refresh by mvrefresher in the log, a mark by
// Log.MarkOwed (lsn NULL), a last attempt that failed (its retry lived in
// memory only), a log row written for another view of that name (dropped
// and created again while the daemon was stopped), or a view that is not
// populated (created or refreshed WITH NO DATA). They get a startup
// refresh; a crash before it leaves them in this list for the next start.
func (l Log) Owed(ctx context.Context, q Querier, names []string) ([]string, error) {
	ident := l.ident
	// Rows from before view_oid was recorded are taken to be of the view.
	rows, err := q.Query(ctx, `SELECT n FROM unnest($1::text[]) n
		WHERE NOT EXISTS (SELECT 1 FROM `+ident+` l WHERE l.mv_name = n AND l.lsn IS NOT NULL AND l.status = 'ok'
		                  AND coalesce(l.view_oid = to_regclass(n), true))
		   OR NOT coalesce((SELECT c.relispopulated FROM pg_class c WHERE c.oid = to_regclass(n)), true)
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

// MarkOwed records in the log, by clearing their lsn, that the views owe a
// refresh the WAL will not bring: the slot is about to be created, a source
// joins the publication, a partition was detached, a base view caught up on
// a debt of its own. Owed then lists them until each has refreshed, so a
// crash before that refresh cannot lose it. Call it in the transaction that
// makes the reason happen, where there is one.
//
// The mark notes its transaction (owed_xid), and a refresh settles the debt
// only if its snapshot sees that transaction committed: a refresh running
// now, with a snapshot older than the reason, leaves the mark in place. So
// the mark takes no lock and never waits for refreshes, however many views
// it marks and however busy they are. A view with no row yet gets one
// (refresh_count 0, no refreshed_at), for the same reason: its first
// refresh may be running.
func (l Log) MarkOwed(ctx context.Context, tx pgx.Tx, views []string) error {
	if len(views) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+l.ident+` AS l (mv_name, lsn, owed_xid, refresh_count, status, attempted_at)
		SELECT v, NULL, pg_current_xact_id(), 0, 'ok', now() FROM unnest($1::text[]) v
		ON CONFLICT (mv_name) DO UPDATE SET lsn = NULL, owed_xid = EXCLUDED.owed_xid`, views)
	if err != nil {
		return fmt.Errorf("mark %d views as owing a refresh in %s: %w", len(views), l.ident, err)
	}
	return nil
}

// recordSuccess writes a successful refresh of view in the refresh's own
// transaction and returns the view's refresh count.
// A debt marked by a transaction the refresh's snapshot (taken before its
// REFRESH, whose own snapshot sees at least as much) does not see stays.
func (l Log) recordSuccess(ctx context.Context, tx pgx.Tx, view *catalog.View, out *Outcome, duration time.Duration, concurrently bool, snapshot string) (int64, error) {
	var maintenance, fullReason *string
	var groups, updated *int64
	if m := out.Maintained; m != nil {
		mode := m.Mode()
		maintenance, groups, updated = &mode, &m.Groups, &m.Updated
		if m.Full != "" {
			fullReason = &m.Full
		}
	}
	var count int64
	err := tx.QueryRow(ctx, `
		INSERT INTO `+l.ident+` AS l (mv_name, refreshed_at, duration_ms, lsn, "concurrently",
			rows_inserted, rows_deleted, refresh_count, status, error, attempted_at, view_oid,
			maintenance, full_reason, groups_recomputed, rows_updated)
		VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, 1, 'ok', NULL, $7, $8, $10, $11, $12, $13)
		ON CONFLICT (mv_name) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
			duration_ms = EXCLUDED.duration_ms,
			lsn = CASE WHEN l.lsn IS NULL AND NOT coalesce(pg_visible_in_snapshot(l.owed_xid, $9::pg_snapshot), true)
			           THEN NULL ELSE EXCLUDED.lsn END,
			"concurrently" = EXCLUDED."concurrently",
			rows_inserted = EXCLUDED.rows_inserted, rows_deleted = EXCLUDED.rows_deleted,
			refresh_count = l.refresh_count + 1, status = 'ok', error = NULL, attempted_at = EXCLUDED.attempted_at,
			view_oid = EXCLUDED.view_oid, maintenance = EXCLUDED.maintenance, full_reason = EXCLUDED.full_reason,
			groups_recomputed = EXCLUDED.groups_recomputed, rows_updated = EXCLUDED.rows_updated
		RETURNING refresh_count`,
		view.Name, float64(duration.Microseconds())/1000, out.LSN.String(), concurrently,
		out.RowsInserted, out.RowsDeleted, out.StartedAt, view.OID, snapshot, maintenance, fullReason, groups, updated).Scan(&count)
	if err != nil {
		return 0, fmt.Errorf("write refresh log %s: %w", l.ident, err)
	}
	return count, nil
}

// recordFailure writes a failed attempt at refreshing view.
func (l Log) recordFailure(ctx context.Context, pool *pgxpool.Pool, view string, failure error, attemptedAt time.Time) error {
	_, err := pool.Exec(ctx, `
		INSERT INTO `+l.ident+` AS l (mv_name, refresh_count, status, error, attempted_at)
		VALUES ($1, 0, 'failed', $2, $3)
		ON CONFLICT (mv_name) DO UPDATE SET status = 'failed', error = EXCLUDED.error,
			attempted_at = EXCLUDED.attempted_at`,
		view, failure.Error(), attemptedAt)
	if err != nil {
		return fmt.Errorf("record failed refresh of %s in %s: %w", view, l.ident, err)
	}
	return nil
}

// passOnDebt marks dependents owed when view itself was, in view's refresh
// transaction (see MarkOwed). Dependents without a row are owed already,
// and none of them is being refreshed: the scheduler never runs a view
// while a view built on it runs.
func (l Log) passOnDebt(ctx context.Context, tx pgx.Tx, view string, dependents []string) error {
	if len(dependents) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE `+l.ident+` SET lsn = NULL, owed_xid = pg_current_xact_id()
		WHERE mv_name = ANY($2) AND lsn IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM `+l.ident+` o WHERE o.mv_name = $1 AND o.lsn IS NOT NULL AND o.status = 'ok')`,
		view, dependents)
	if err != nil {
		return fmt.Errorf("pass the refresh owed by %s on to its dependents in %s: %w", view, l.ident, err)
	}
	return nil
}

// LogRow is a view's row in the refresh log.
type LogRow struct {
	RefreshedAt  *time.Time
	AttemptedAt  time.Time
	Status       string
	Error        *string
	RefreshCount int64
	DurationMS   *float64
	Concurrently *bool
	RowsInserted *int64
	RowsDeleted  *int64
	// LSN is null while the view owes a refresh (Log.MarkOwed).
	LSN *string
	// Maintenance is how the last maintenance of a view maintained
	// incrementally went: "incremental" or "full"; null for a plain
	// refresh.
	Maintenance *string
}

// Incremental reports whether the view's last refresh was an incremental
// maintenance.
func (r LogRow) Incremental() bool {
	return r.Maintenance != nil && *r.Maintenance == maintain.ModeIncremental
}

// Duration is the duration of the view's last refresh attempt; 0 when
// there is none.
func (r LogRow) Duration() time.Duration {
	if r.DurationMS == nil {
		return 0
	}
	return time.Duration(*r.DurationMS * float64(time.Millisecond))
}

// Rows reads the rows of views, in one query; a view without a row (never
// attempted) is missing from the result, and so is every view while the
// table does not exist yet.
func (l Log) Rows(ctx context.Context, q Querier, views []string) (map[string]LogRow, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", l.ident).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read refresh log %s: %w", l.ident, err)
	}
	out := map[string]LogRow{}
	if !exists {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT mv_name, refreshed_at, attempted_at, status, error, refresh_count, duration_ms,
			"concurrently", rows_inserted, rows_deleted, lsn::text, maintenance
		FROM `+l.ident+` WHERE mv_name = ANY($1)`, views)
	if err != nil {
		return nil, fmt.Errorf("read refresh log %s: %w", l.ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var r LogRow
		if err := rows.Scan(&name, &r.RefreshedAt, &r.AttemptedAt, &r.Status, &r.Error, &r.RefreshCount, &r.DurationMS,
			&r.Concurrently, &r.RowsInserted, &r.RowsDeleted, &r.LSN, &r.Maintenance); err != nil {
			return nil, fmt.Errorf("read refresh log %s: %w", l.ident, err)
		}
		out[name] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read refresh log %s: %w", l.ident, err)
	}
	return out, nil
}
