package inspect_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/inspect"
)

const verifySQL = `
CREATE TABLE app.orders (id int PRIMARY KEY, account int NOT NULL, amount numeric NOT NULL, meta json);
INSERT INTO app.orders VALUES (1, 1, 10.50, '{"a": 1}'), (2, 1, 5, null), (3, 2, 7, '[]');
CREATE MATERIALIZED VIEW app.mv_totals AS
	SELECT account, count(*) AS n, sum(amount) AS total FROM app.orders GROUP BY account;
CREATE UNIQUE INDEX ON app.mv_totals (account);
-- json has no equality operator: rows compare by their text form.
CREATE MATERIALIZED VIEW app.mv_meta AS SELECT id, meta FROM app.orders;
-- The seed's bug: a column that changes at every evaluation.
CREATE MATERIALIZED VIEW app.mv_now AS SELECT account, clock_timestamp() AS computed_at FROM app.orders;
CREATE MATERIALIZED VIEW app.mv_empty AS SELECT id FROM app.orders WITH NO DATA;
CREATE SCHEMA "Other";
CREATE MATERIALIZED VIEW "Other"."Quoted view" AS SELECT count(*) AS n FROM app.orders;`

func (e *env) verify(views ...string) ([]inspect.Verification, error) {
	ctx := context.Background()
	in, err := inspect.Open(ctx, e.cfg)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	return in.Verify(ctx, views)
}

func TestVerify(t *testing.T) {
	e := newEnv(t, verifySQL)
	byView := func(vs []inspect.Verification) map[string]inspect.Verification {
		out := map[string]inspect.Verification{}
		for _, v := range vs {
			out[v.View] = v
		}
		return out
	}

	// Without names: every managed view, the schema app's.
	got, err := e.verify()
	if err != nil {
		t.Fatal(err)
	}
	vs := byView(got)
	if v := vs["app.mv_totals"]; !v.Equal || v.ViewRows != 2 || v.DefinitionRows != 2 {
		t.Errorf("app.mv_totals just refreshed: %+v, want equal with 2 rows", v)
	}
	if v := vs["app.mv_meta"]; !v.Equal || v.ViewRows != 3 {
		t.Errorf("app.mv_meta (a json column): %+v, want equal with 3 rows", v)
	}
	if v := vs["app.mv_now"]; v.Equal || v.Missing != 3 || v.Extra != 3 || len(v.MissingRows) != 3 {
		t.Errorf("app.mv_now (clock_timestamp()): %+v, want every row different", v)
	}
	if _, ok := vs["Other.\"Quoted view\""]; ok {
		t.Error("a view outside the managed schemas was verified without being named")
	}

	// A write the view has not been refreshed for.
	if _, err := e.pool.Exec(context.Background(), "UPDATE app.orders SET amount = 20 WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	got, err = e.verify("app.mv_totals", `"Other"."Quoted view"`, "app.mv_empty")
	if err != nil {
		t.Fatal(err)
	}
	if names := []string{got[0].View, got[1].View, got[2].View}; !slices.Equal(names, []string{"app.mv_totals", `"Other"."Quoted view"`, "app.mv_empty"}) {
		t.Errorf("verified %q, want the views named, in order, as format('%%I.%%I') writes them", names)
	}
	if v := got[0]; v.Equal || v.Missing != 1 || v.Extra != 1 ||
		!slices.Equal(v.MissingRows, []string{"(2,1,20)"}) || !slices.Equal(v.ExtraRows, []string{"(2,1,7)"}) {
		t.Errorf("app.mv_totals after an unrefreshed update: %+v, want (2,1,20) missing and (2,1,7) extra", v)
	}
	if v := got[1]; !v.Equal {
		t.Errorf("a view outside the managed schemas, named: %+v, want equal", v)
	}
	if v := got[2]; v.Equal || !strings.Contains(v.Problem, "not populated") {
		t.Errorf("a view created WITH NO DATA: %+v, want a problem saying it is not populated", v)
	}

	if _, err := e.verify("app.orders"); err == nil || !strings.Contains(err.Error(), "no such materialized view") {
		t.Errorf("verify of a table: %v, want no such materialized view", err)
	}
}

// Before PostgreSQL 17, REFRESH evaluates a definition with the session's
// search_path, which a function's body may rely on; verify does the same
// (from 17 on, REFRESH and verify use pg_catalog, pg_temp, and such a view
// cannot be created).
func TestVerify_SearchPathAsRefreshHasIt(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	var version int
	if err := e.pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version >= 170000 {
		return // nothing to compare: PostgreSQL refuses the view
	}
	if _, err := e.pool.Exec(ctx, `CREATE TABLE public.rates (r int);
		INSERT INTO public.rates VALUES (3);
		CREATE FUNCTION public.top_rate() RETURNS int LANGUAGE sql STABLE AS 'SELECT max(r) FROM rates';
		CREATE MATERIALIZED VIEW app.mv_rate AS SELECT public.top_rate() AS r;`); err != nil {
		t.Fatal(err)
	}
	got, err := e.verify("app.mv_rate")
	if err != nil || !got[0].Equal {
		t.Fatalf("a view whose function reads an unqualified table: %+v, %v; want equal, as REFRESH computes it", got, err)
	}
}

// TestVerify_UnderTheSessionsDateStyle verifies views whose definitions
// hold a timestamptz in India and print one as text, in a session under
// DateStyle SQL in Asia/Kolkata (where the definition's text, so printed,
// says IST, which reads back as Israel's time): the materialized view,
// refreshed in such a session, is evaluated under its text forms; the
// maintained table under the ones its maintenances pin.
func TestVerify_UnderTheSessionsDateStyle(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	e.cfg.DatabaseURL += "&DateStyle=SQL%2C%20DMY&timezone=Asia/Kolkata"
	pool, err := pgxpool.New(ctx, e.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE app.ev (id int PRIMARY KEY, at timestamptz NOT NULL);
		INSERT INTO app.ev SELECT g, timestamptz '2026-01-05 00:00+00' + g * interval '1 hour' FROM generate_series(1, 200) g;
		CREATE MATERIALIZED VIEW app.mv_kolkata AS
			SELECT id, at::text AS shown FROM app.ev WHERE at >= timestamptz '2026-01-10 00:00+05:30';
		CREATE MATERIALIZED VIEW app.mv_kolkata_maintained AS
			SELECT id, at::text AS shown FROM app.ev WHERE at >= timestamptz '2026-01-10 00:00+05:30';`); err != nil {
		t.Fatal(err)
	}
	enableIncremental(t, pool, "app.mv_kolkata_maintained")
	got, err := e.verify("app.mv_kolkata", "app.mv_kolkata_maintained")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		if !v.Equal || v.ViewRows == 0 {
			t.Errorf("verify of %s just computed: %+v, want equal", v.View, v)
		}
	}
}
