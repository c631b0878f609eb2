package catalog_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// checkSchema has the seed's NOW() view next to views that must not be
// flagged, and the other ways a view can be non-deterministic.
const checkSchema = `
CREATE SCHEMA analytics;
CREATE TABLE fact_events (id bigint PRIMARY KEY, account_id int, step text, session_id bigint, at timestamptz);
CREATE SEQUENCE s;
CREATE FUNCTION bump(x int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN x + 1; END $$;
CREATE FUNCTION lookup(x int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'a' || x $$;
CREATE VIEW v_stamped AS SELECT id, clock_timestamp() AS seen_at FROM fact_events;

-- The seed: a freshness column inside the data.
CREATE MATERIALIZED VIEW analytics.mv_conversion_funnels AS
    SELECT account_id, step AS funnel_step, count(DISTINCT session_id) AS sessions, NOW() AS last_refreshed_at
    FROM fact_events GROUP BY 1, 2;
CREATE UNIQUE INDEX ON analytics.mv_conversion_funnels (account_id, funnel_step);
-- The fix: a pure aggregation.
CREATE MATERIALIZED VIEW analytics.mv_fixed AS
    SELECT account_id, step AS funnel_step, count(DISTINCT session_id) AS sessions FROM fact_events GROUP BY 1, 2;
CREATE UNIQUE INDEX ON analytics.mv_fixed (account_id, funnel_step);
-- Immutable functions and date arithmetic on data are fine.
CREATE MATERIALIZED VIEW analytics.mv_daily AS
    SELECT date_trunc('day', at AT TIME ZONE 'UTC') AS day, count(*) AS n, lower(min(step)) AS first_step FROM fact_events GROUP BY 1;
CREATE UNIQUE INDEX ON analytics.mv_daily (day);

CREATE MATERIALIZED VIEW analytics.mv_sql_value AS SELECT id, CURRENT_TIMESTAMP AS ts FROM fact_events;
CREATE UNIQUE INDEX ON analytics.mv_sql_value (id);
CREATE MATERIALIZED VIEW analytics.mv_random AS SELECT id, random() AS r, gen_random_uuid() AS u, nextval('s') AS n FROM fact_events;
CREATE UNIQUE INDEX ON analytics.mv_random (id);
CREATE MATERIALIZED VIEW analytics.mv_filter AS SELECT id FROM fact_events WHERE at > now() - interval '1 day';
CREATE UNIQUE INDEX ON analytics.mv_filter (id);
-- Rows that change with the time alone: refresh_every keeps up with them.
CREATE MATERIALIZED VIEW analytics.mv_today AS SELECT id FROM fact_events WHERE at >= current_date;
CREATE UNIQUE INDEX ON analytics.mv_today (id);
CREATE MATERIALIZED VIEW analytics.mv_join_today AS
    SELECT e.id FROM fact_events e JOIN fact_events f ON f.id = e.id AND f.at >= current_date;
CREATE UNIQUE INDEX ON analytics.mv_join_today (id);
CREATE MATERIALIZED VIEW analytics.mv_sampled AS SELECT id FROM fact_events WHERE random() < 0.5;
CREATE UNIQUE INDEX ON analytics.mv_sampled (id);
CREATE MATERIALIZED VIEW analytics.mv_via_view AS SELECT id, seen_at FROM v_stamped;
CREATE UNIQUE INDEX ON analytics.mv_via_view (id);
CREATE MATERIALIZED VIEW analytics.mv_subquery AS SELECT * FROM (SELECT id, statement_timestamp() AS t FROM fact_events) sub;
CREATE UNIQUE INDEX ON analytics.mv_subquery (id);
CREATE MATERIALIZED VIEW analytics.mv_user_fn AS SELECT id, bump(account_id) AS b, lookup(account_id) AS l FROM fact_events;
CREATE UNIQUE INDEX ON analytics.mv_user_fn (id);
CREATE MATERIALIZED VIEW analytics.mv_no_index AS SELECT account_id, count(*) AS n FROM fact_events GROUP BY account_id;
-- Through a system view: its rule is read too.
CREATE MATERIALIZED VIEW analytics.mv_locks AS SELECT count(*) AS n FROM pg_locks;
CREATE UNIQUE INDEX ON analytics.mv_locks (n);
`

func TestCheck(t *testing.T) {
	pool := newDB(t, checkSchema)
	ctx := context.Background()
	cat, err := catalog.Discover(ctx, pool, catalog.DiscoverOptions{Schemas: []string{"analytics"}})
	if err != nil {
		t.Fatal(err)
	}
	never := func(string) bool { return false }
	periodic := func(v string) bool { return v == "analytics.mv_today" }
	findings, err := catalog.Check(ctx, pool, cat, never, periodic)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ view, severity, code string }
	got := map[key][]string{}
	for _, f := range findings {
		k := key{f.View, string(f.Severity), f.Code}
		got[k] = append(got[k], f.Message)
	}
	expect := func(view string, sev catalog.Severity, code string, mentions ...string) {
		t.Helper()
		msgs := got[key{view, string(sev), code}]
		if len(msgs) == 0 {
			t.Errorf("%s: no %s %s finding", view, sev, code)
			return
		}
		all := strings.Join(msgs, "\n")
		for _, m := range mentions {
			if !strings.Contains(all, m) {
				t.Errorf("%s %s does not mention %q: %s", view, code, m, all)
			}
		}
		delete(got, key{view, string(sev), code})
	}
	expect("analytics.mv_conversion_funnels", catalog.SeverityError, "nondeterministic-output", "now()", `column "last_refreshed_at"`, "rewrites the whole view")
	expect("analytics.mv_sql_value", catalog.SeverityError, "nondeterministic-output", "CURRENT_TIMESTAMP", `column "ts"`)
	expect("analytics.mv_random", catalog.SeverityError, "nondeterministic-output", "random()", "gen_random_uuid()", "nextval()")
	expect("analytics.mv_filter", catalog.SeverityWarning, "time-based-filter", "now()", "filter", "refresh_every", "views: {analytics.mv_filter: {refresh_every: 1h}}")
	expect("analytics.mv_join_today", catalog.SeverityWarning, "time-based-filter", "CURRENT_DATE", "refresh_every")
	expect("analytics.mv_sampled", catalog.SeverityWarning, "nondeterministic-filter", "random()", "filter")
	expect("analytics.mv_via_view", catalog.SeverityError, "nondeterministic-output", "clock_timestamp()", "through view v_stamped")
	expect("analytics.mv_subquery", catalog.SeverityError, "nondeterministic-output", "statement_timestamp()")
	expect("analytics.mv_user_fn", catalog.SeverityError, "nondeterministic-output", "public.bump()", `column "b"`)
	expect("analytics.mv_user_fn", catalog.SeverityWarning, "opaque-function", "public.lookup()")
	expect("analytics.mv_no_index", catalog.SeverityWarning, "no-unique-index", `CREATE UNIQUE INDEX ON analytics.mv_no_index ("account_id")`)
	expect("analytics.mv_locks", catalog.SeverityError, "nondeterministic-output", "pg_lock_status()", "through view pg_locks")
	for k, msgs := range got {
		t.Errorf("unexpected finding %v: %s", k, msgs)
	}
	if !catalog.HasErrors(findings) {
		t.Error("HasErrors is false with errors present")
	}

	// concurrently: always turns the missing index into an error.
	always, err := catalog.Check(ctx, pool, cat, func(v string) bool { return v == "analytics.mv_no_index" }, periodic)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range always {
		if f.View == "analytics.mv_no_index" && f.Code == "no-unique-index" && f.Severity != catalog.SeverityError {
			t.Errorf("no-unique-index under concurrently: always is a %s, want an error", f.Severity)
		}
	}
}
