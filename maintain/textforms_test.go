package maintain_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/maintain"
)

// textFormsSchema has views whose definitions hold constants the session's
// text forms print ambiguously: an interval with mixed signs
// (IntervalStyle sql_standard prints '-1 2:00:00'), and a timestamptz in
// India (DateStyle SQL prints it with the abbreviation IST, which
// PostgreSQL's default abbreviations read as Israel's).
const textFormsSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.ev (id int PRIMARY KEY, at timestamptz);
ALTER TABLE shop.ev REPLICA IDENTITY FULL;
CREATE INDEX ON shop.ev (at);
INSERT INTO shop.ev SELECT g, timestamptz '2026-01-05 00:00+00' + g * interval '1 hour' FROM generate_series(1, 200) g;
CREATE MATERIALIZED VIEW shop.recent AS
  SELECT id, at FROM shop.ev WHERE at > timestamptz '2026-01-10 00:00+00' + interval '-1 day -2 hours';
CREATE MATERIALIZED VIEW shop.kolkata AS
  SELECT id, at FROM shop.ev WHERE at >= timestamptz '2026-01-10 00:00+05:30';
CREATE VIEW shop.kolkata_early AS
  SELECT id FROM shop.kolkata WHERE at < timestamptz '2026-01-12 00:00+05:30';`

// TestMaintainUnderTheSessionsIntervalStyle maintains a view whose
// definition was read under IntervalStyle sql_standard: the maintenance
// must compute what the definition says (-1 day -2 hours), not what its
// sql_standard text reads as under postgres (-1 day +2 hours).
func TestMaintainUnderTheSessionsIntervalStyle(t *testing.T) {
	ctx := context.Background()
	o := newOracleWith(t, "text_interval", textFormsSchema, []string{"shop.recent"}, map[string]string{"IntervalStyle": "sql_standard", "timezone": "UTC"})
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		// After 01-08 22:00 (the definition's bound), before 01-09 02:00
		// (the bound misread).
		changes = append(changes, o.exec(ctx, tx, "shop.ev", 'I', "INSERT INTO shop.ev VALUES (1001, '2026-01-08 23:00+00') RETURNING id::text, at::text"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.recent", changes); res.Inserted != 1 {
		t.Errorf("a row inside the definition's range: maintenance %+v, want it inserted", res)
	}
}

// TestConvertUnderTheSessionsDateStyle converts a view and back under
// DateStyle SQL in Asia/Kolkata: the definition view, the view built on
// it (created again) and the materialized view turned back select the
// rows the original definitions did, not those after an instant in
// Israel's time.
func TestConvertUnderTheSessionsDateStyle(t *testing.T) {
	ctx := context.Background()
	o := newOracleWith(t, "text_date", textFormsSchema, []string{"shop.kolkata"}, map[string]string{"DateStyle": "SQL, DMY", "timezone": "Asia/Kolkata"})
	// definition is the relation holding the view's definition.
	check := func(when, definition string) {
		t.Helper()
		var view, defined, early, wantView, wantEarly int
		if err := o.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM shop.kolkata), (SELECT count(*) FROM `+definition+`),
			(SELECT count(*) FROM shop.kolkata_early),
			(SELECT count(*) FROM shop.ev WHERE at >= timestamptz '2026-01-10 00:00+05:30'),
			(SELECT count(*) FROM shop.kolkata WHERE at < timestamptz '2026-01-12 00:00+05:30')`).
			Scan(&view, &defined, &early, &wantView, &wantEarly); err != nil {
			t.Fatal(err)
		}
		if view != wantView || defined != wantView || early != wantEarly {
			t.Errorf("%s: shop.kolkata has %d rows, %s %d, shop.kolkata_early %d; their original definitions select %d and %d",
				when, view, definition, defined, early, wantView, wantEarly)
		}
	}
	check("maintained", `shop."kolkata__definition"`)
	if err := maintain.Disable(ctx, o.pool, "shop.kolkata"); err != nil {
		t.Fatal(err)
	}
	check("turned back", "shop.kolkata")
}
