package maintain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrRefused means Enable or Disable found something it cannot carry over
// and changed nothing; the error says what.
var ErrRefused = errors.New("refused")

// conversionLockClass is the first key of the advisory lock a conversion
// takes on the view's name ("mvr\x02" as an int4; the refresher's
// per-view locks use "mvr\x00", the refresh log's "mvr\x01").
const conversionLockClass int32 = 0x6d767202

// lockTimeout bounds the wait for a view in use: a conversion waits behind
// its readers and refreshes, and new readers wait behind it, so a long wait
// would stall dashboards; failing with a reason lets the user pick a moment.
const lockTimeout = "5s"

// Enable turns the materialized view name (format('%I.%I') spelling, e.g.
// analytics.mv_x) into a table maintained incrementally, in one
// transaction: the table keeps the name, columns, rows, indexes, owner,
// grants and comments, its definition becomes the view name__definition,
// and the views built on it are re-created over the table. key is the
// table's unique key (column names), which a unique index NULLS NOT
// DISTINCT enforces.
func Enable(ctx context.Context, pool *pgxpool.Pool, name string, key []string) error {
	if err := inTransaction(ctx, pool, name, func(tx pgx.Tx) error { return enable(ctx, tx, name, key) }); err != nil {
		return fmt.Errorf("turn on incremental maintenance of %s: %w", name, err)
	}
	return nil
}

// Disable turns a table Enable made back into the materialized view of its
// definition, populated, in one transaction, with the table's indexes
// (less the key index Enable added), owner, grants and comments, and the
// views built on it re-created.
func Disable(ctx context.Context, pool *pgxpool.Pool, name string) error {
	if err := inTransaction(ctx, pool, name, func(tx pgx.Tx) error { return disable(ctx, tx, name) }); err != nil {
		return fmt.Errorf("turn off incremental maintenance of %s: %w", name, err)
	}
	return nil
}

func enable(ctx context.Context, tx pgx.Tx, name string, key []string) error {
	rel, err := lockRelation(ctx, tx, name, "m")
	if err != nil {
		return err
	}
	if !rel.populated {
		return fmt.Errorf("%w: %s is not populated; REFRESH it first, its rows become the table's", ErrRefused, rel.name)
	}
	if rel.definitionExists {
		return fmt.Errorf("%w: %s exists already", ErrRefused, rel.definitionView)
	}
	cols, err := readColumns(ctx, tx, rel.oid)
	if err != nil {
		return err
	}
	keyCols, err := quoteKey(cols, key)
	if err != nil {
		return err
	}
	props, err := captureProperties(ctx, tx, rel.oid)
	if err != nil {
		return err
	}
	deps, err := findDependents(ctx, tx, rel.oid)
	if err != nil {
		return err
	}
	var definition, timeZone, marker, keyIndex string
	var keyIndexed bool
	if err := tx.QueryRow(ctx, `
SELECT pg_get_viewdef($1::oid), current_setting('TimeZone'),
       format('%I', c.relname || '__key'),
       EXISTS (SELECT FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indnullsnotdistinct
                  AND i.indexprs IS NULL AND i.indpred IS NULL
                  AND (SELECT array_agg(DISTINCT a.attname::text ORDER BY a.attname::text)
                         FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k)
                      = (SELECT array_agg(DISTINCT k ORDER BY k) FROM unnest($2::text[]) k))
  FROM pg_class c WHERE c.oid = $1`, rel.oid, key).Scan(&definition, &timeZone, &keyIndex, &keyIndexed); err != nil {
		return fmt.Errorf("read the definition of %s: %w", rel.name, err)
	}
	if err := tx.QueryRow(ctx, "SELECT quote_literal($1)", Marker{Table: rel.name, TimeZone: timeZone}.Comment()).Scan(&marker); err != nil {
		return fmt.Errorf("quote the marker: %w", err)
	}
	definition = trimDefinition(definition)

	stmts := []string{
		"CREATE VIEW " + rel.definitionView + " AS " + definition,
		"ALTER VIEW " + rel.definitionView + " OWNER TO " + props.owner,
		"COMMENT ON VIEW " + rel.definitionView + " IS " + marker,
	}
	if !rel.ownedByCurrentUser {
		stmts = append(stmts, "GRANT SELECT ON TABLE "+rel.definitionView+" TO CURRENT_USER")
	}
	stmts = append(stmts, dropStatements(deps)...)
	stmts = append(stmts,
		"DROP MATERIALIZED VIEW "+rel.name,
		"CREATE TABLE "+rel.name+" ("+strings.Join(columnDefinitions(cols), ", ")+")"+rel.storage.clause(),
		"INSERT INTO "+rel.name+" SELECT * FROM "+rel.definitionView,
	)
	stmts = append(stmts, props.restoreStatements("TABLE", rel.name, "")...)
	if !keyIndexed {
		stmts = append(stmts, "CREATE UNIQUE INDEX "+keyIndex+" ON "+rel.name+" ("+strings.Join(keyCols, ", ")+") NULLS NOT DISTINCT")
	}
	stmts = append(stmts, recreateStatements(deps)...)
	return execAll(ctx, tx, stmts)
}

func disable(ctx context.Context, tx pgx.Tx, name string) error {
	rel, err := lockRelation(ctx, tx, name, "r")
	if err != nil {
		return err
	}
	if !rel.definitionExists {
		return fmt.Errorf("%w: %s is a table without a definition view %s", ErrRefused, rel.name, rel.definitionView)
	}
	var definition, comment, keyIndex string
	var isView bool
	if err := tx.QueryRow(ctx, `
SELECT d.relkind = 'v', coalesce(obj_description(d.oid, 'pg_class'), ''),
       CASE WHEN d.relkind = 'v' THEN pg_get_viewdef(d.oid) ELSE '' END,
       format('%I', c.relname || '__key')
  FROM pg_class c JOIN pg_class d ON d.relnamespace = c.relnamespace AND d.relname = c.relname || '__definition'
 WHERE c.oid = $1`, rel.oid).Scan(&isView, &comment, &definition, &keyIndex); err != nil {
		return fmt.Errorf("read the definition view %s: %w", rel.definitionView, err)
	}
	marker, ok, err := ParseMarker(comment)
	switch {
	case err != nil:
		return fmt.Errorf("read the comment of %s: %w", rel.definitionView, err)
	case !isView || !ok:
		return fmt.Errorf("%w: %s is not a definition view mvrefresher made (no marker in its comment)", ErrRefused, rel.definitionView)
	case marker.Table != rel.name:
		return fmt.Errorf("%w: %s defines %s, not %s", ErrRefused, rel.definitionView, marker.Table, rel.name)
	}
	props, err := captureProperties(ctx, tx, rel.oid)
	if err != nil {
		return err
	}
	deps, err := findDependents(ctx, tx, rel.oid)
	if err != nil {
		return err
	}
	stmts := dropStatements(deps)
	stmts = append(stmts,
		"DROP TABLE "+rel.name,
		"CREATE MATERIALIZED VIEW "+rel.name+rel.storage.clause()+" AS "+trimDefinition(definition)+" WITH DATA",
	)
	stmts = append(stmts, props.restoreStatements("MATERIALIZED VIEW", rel.name, keyIndex)...)
	stmts = append(stmts, "DROP VIEW "+rel.definitionView)
	stmts = append(stmts, recreateStatements(deps)...)
	return execAll(ctx, tx, stmts)
}

// quoteKey checks that the key names columns of the view and quotes them.
func quoteKey(cols []column, key []string) ([]string, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: no key columns given", ErrRefused)
	}
	quoted := make([]string, 0, len(key))
	for _, k := range key {
		i := slices.IndexFunc(cols, func(c column) bool { return c.name == k })
		if i < 0 {
			return nil, fmt.Errorf("%w: the key column %q is not a column of the view", ErrRefused, k)
		}
		quoted = append(quoted, cols[i].quoted)
	}
	return quoted, nil
}

// trimDefinition drops the semicolon pg_get_viewdef ends with, so that the
// definition can be followed by WITH DATA.
func trimDefinition(def string) string {
	return strings.TrimRight(strings.TrimSpace(def), ";")
}

// inTransaction runs fn in a transaction that reads every name
// schema-qualified and every constant in the text forms (pg_get_viewdef,
// format_type and pg_get_indexdef print them so under this search_path and
// textForms, which makes the captured SQL mean the same when it is
// replayed, and computes a maintained table as its maintenances will) and
// gives up on a lock after lockTimeout.
func inTransaction(ctx context.Context, pool *pgxpool.Pool, name string, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Before the lock timeout: a conversion of name by another
		// instance (of an HA pair starting together) may take longer than
		// it, and this one then finds its outcome rather than a timeout.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", conversionLockClass, name); err != nil {
			return fmt.Errorf("wait for other conversions of %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL lock_timeout = '"+lockTimeout+"'"); err != nil {
			return fmt.Errorf("set up the transaction: %w", err)
		}
		if err := PinTextForms(ctx, tx); err != nil {
			return fmt.Errorf("set up the transaction: %w", err)
		}
		return fn(tx)
	})
}

// execAll runs the statements in order; the error names the one that failed.
func execAll(ctx context.Context, tx pgx.Tx, stmts []string) error {
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, explainLockTimeout(err))
		}
	}
	return nil
}

// explainLockTimeout says what a lock timeout means to the user.
func explainLockTimeout(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.LockNotAvailable {
		return fmt.Errorf("a relation is in use (a long query or a refresh holds it) and stayed so for %s; nothing changed, try again later: %w", lockTimeout, err)
	}
	return err
}
