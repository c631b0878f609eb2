package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/maintain"
)

// Verification is a materialized view, or a table maintained
// incrementally, compared with its definition.
type Verification struct {
	View string `json:"view"`
	// Equal: the view holds exactly the rows its definition returns now.
	Equal bool `json:"equal"`
	// Problem says why the view could not be compared (it is not
	// populated); the view is not Equal then.
	Problem string `json:"problem,omitempty"`
	// DefinitionRows and ViewRows count the rows of each.
	DefinitionRows int64 `json:"definition_rows"`
	ViewRows       int64 `json:"view_rows"`
	// Missing counts the rows the definition returns and the view lacks,
	// Extra those the view holds and the definition does not return (a
	// row twice in one and once in the other counts once).
	Missing int64 `json:"missing"`
	Extra   int64 `json:"extra"`
	// MissingRows and ExtraRows are the first of them, in PostgreSQL's
	// row text form, sorted, at most VerifySamples of each.
	MissingRows []string `json:"missing_rows"`
	ExtraRows   []string `json:"extra_rows"`
	DurationMS  float64  `json:"duration_ms"`
}

// VerifySamples is how many differing rows of each side a Verification
// shows.
const VerifySamples = 10

// Verify compares each materialized view or maintained table of views
// (every managed view when views is empty) with its definition,
// read-only, the view and the definition read in one snapshot. Rows are compared by their text form,
// as `(1,2.50,x)`: two rows are the same when PostgreSQL prints them the
// same, which, like REFRESH ... CONCURRENTLY's comparison, tells 1.0 from
// 1.00. Evaluating a definition costs what a refresh of the view costs.
func (in *Inspector) Verify(ctx context.Context, views []string) ([]Verification, error) {
	if len(views) == 0 {
		views = in.catalog.Names()
	}
	out := make([]Verification, 0, len(views))
	for _, name := range views {
		v, err := in.verify(ctx, name)
		if err != nil {
			return out, fmt.Errorf("verify %s: %w", name, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// verify compares one view with its definition, in one
// REPEATABLE READ, READ ONLY transaction.
func (in *Inspector) verify(ctx context.Context, name string) (Verification, error) {
	schema, relname, err := config.ParseQualifiedName(name)
	if err != nil {
		return Verification{View: name}, err
	}
	started := time.Now()
	var v Verification
	err = pgx.BeginTxFunc(ctx, in.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// With only pg_catalog on the search path, pg_get_viewdef names
		// every other relation and function with its schema; with the text
		// forms pinned, it prints constants that read back as the same
		// values (a timestamptz with its offset, not a zone abbreviation).
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp"); err != nil {
			return err
		}
		if err := maintain.PinTextForms(ctx, tx); err != nil {
			return err
		}
		if in.cfg.LockTimeout > 0 {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", in.cfg.LockTimeout.Milliseconds())); err != nil {
				return err
			}
		}
		var definition string
		var populated bool
		var marker *string // the definition view's comment, for a maintained table
		err := tx.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname), c.relispopulated, pg_get_viewdef(coalesce(d.oid, c.oid)),
				obj_description(d.oid, 'pg_class')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_class d ON c.relkind = 'r' AND d.relnamespace = c.relnamespace AND d.relkind = 'v'
				AND d.relname = c.relname || '`+catalog.MaintainedDefinitionSuffix+`'
				AND starts_with(coalesce(obj_description(d.oid, 'pg_class'), ''), '`+catalog.MaintainedMarkerPrefix+`')
			WHERE n.nspname = $1 AND c.relname = $2 AND (c.relkind = 'm' OR d.oid IS NOT NULL)`, schema, relname).Scan(&v.View, &populated, &definition, &marker)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("no such materialized view or maintained table")
		}
		if err != nil {
			return fmt.Errorf("read its definition: %w", err)
		}
		if !populated {
			v.Problem = "not populated (created or refreshed WITH NO DATA): there is nothing to compare"
			return nil
		}
		if err := evaluateAsMaintained(ctx, tx, marker); err != nil {
			return err
		}
		definition = strings.TrimSuffix(strings.TrimSpace(definition), ";")
		view := pgx.Identifier{schema, relname}.Sanitize()
		err = tx.QueryRow(ctx, `
			WITH def AS MATERIALIZED (SELECT d::text AS r FROM (`+definition+`) d),
			cur AS MATERIALIZED (SELECT c::text AS r FROM `+view+` c),
			missing AS MATERIALIZED (SELECT r FROM def EXCEPT ALL SELECT r FROM cur),
			extra AS MATERIALIZED (SELECT r FROM cur EXCEPT ALL SELECT r FROM def)
			SELECT (SELECT count(*) FROM def), (SELECT count(*) FROM cur),
				(SELECT count(*) FROM missing), (SELECT count(*) FROM extra),
				ARRAY(SELECT r FROM missing ORDER BY r LIMIT $1), ARRAY(SELECT r FROM extra ORDER BY r LIMIT $1)`,
			VerifySamples).Scan(&v.DefinitionRows, &v.ViewRows, &v.Missing, &v.Extra, &v.MissingRows, &v.ExtraRows)
		if err != nil {
			return fmt.Errorf("compare it with its definition: %w", err)
		}
		v.Equal = v.Missing == 0 && v.Extra == 0
		return nil
	})
	v.DurationMS = float64(time.Since(started).Microseconds()) / 1000
	if v.View == "" {
		v.View = name
	}
	return v, err
}

// evaluateAsMaintained sets up tx to evaluate a definition as its view
// gets it: a maintained table (marker is its definition view's comment)
// under the TimeZone it was computed with, search_path pg_catalog, pg_temp
// and the text forms its maintenances pin (tx has them); a materialized
// view as REFRESH evaluates it, under the session's text forms, with that
// search path from PostgreSQL 17 on and the session's before (a user
// function's body may depend on it).
func evaluateAsMaintained(ctx context.Context, tx pgx.Tx, marker *string) error {
	if marker != nil {
		m, _, err := maintain.ParseMarker(*marker)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT set_config('TimeZone', $1, true)", m.TimeZone)
		return err
	}
	_, err := tx.Exec(ctx, `SET LOCAL DateStyle TO DEFAULT; SET LOCAL IntervalStyle TO DEFAULT; SET LOCAL extra_float_digits TO DEFAULT;
		DO $$ BEGIN
		IF current_setting('server_version_num')::int < 170000 THEN SET LOCAL search_path TO DEFAULT; END IF; END $$`)
	return err
}
