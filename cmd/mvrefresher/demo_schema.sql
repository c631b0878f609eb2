-- The seed's analytics schema: one fact table, four dashboard views, and one
-- view over another. No view carries a NOW() column: freshness lives in the
-- refresh log instead.
CREATE SCHEMA core;
CREATE SCHEMA analytics;

CREATE TABLE core.fact_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY,
    occurred_at timestamptz NOT NULL,
    account_id  int NOT NULL,
    session_id  bigint NOT NULL,
    event_type  text NOT NULL,            -- visit, signup, activate, purchase
    experiment  text,
    variant     text,
    amount      numeric(12, 2) NOT NULL DEFAULT 0,
    properties  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE core.fact_events_past PARTITION OF core.fact_events
    FOR VALUES FROM (MINVALUE) TO ('2026-01-01');
CREATE TABLE core.fact_events_2026 PARTITION OF core.fact_events
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE core.fact_events_future PARTITION OF core.fact_events DEFAULT;

-- A table no view reads: writes to it refresh nothing.
CREATE TABLE core.audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);

-- A plain view in between: the daemon follows it to fact_events.
CREATE VIEW analytics.v_purchases AS
    SELECT occurred_at, account_id, amount FROM core.fact_events WHERE event_type = 'purchase';

CREATE MATERIALIZED VIEW analytics.mv_conversion_funnels AS
    SELECT account_id % 20 AS segment, event_type AS funnel_step, count(DISTINCT session_id) AS sessions
    FROM core.fact_events GROUP BY 1, 2;
CREATE UNIQUE INDEX ON analytics.mv_conversion_funnels (segment, funnel_step);

CREATE MATERIALIZED VIEW analytics.mv_retention_cohorts AS
    WITH firsts AS (SELECT account_id, min(occurred_at) AS first_seen FROM core.fact_events GROUP BY 1)
    SELECT date_trunc('week', f.first_seen) AS cohort_week,
           (extract(epoch FROM date_trunc('week', e.occurred_at) - date_trunc('week', f.first_seen)) / 604800)::int AS week_offset,
           count(DISTINCT e.account_id) AS accounts
    FROM core.fact_events e JOIN firsts f USING (account_id) GROUP BY 1, 2;
CREATE UNIQUE INDEX ON analytics.mv_retention_cohorts (cohort_week, week_offset);

CREATE MATERIALIZED VIEW analytics.mv_revenue_summary AS
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS purchases, sum(amount) AS revenue
    FROM analytics.v_purchases GROUP BY 1;
CREATE UNIQUE INDEX ON analytics.mv_revenue_summary (day);

CREATE MATERIALIZED VIEW analytics.mv_experiment_results AS
    SELECT experiment, variant, count(DISTINCT session_id) AS exposures,
           count(*) FILTER (WHERE event_type = 'purchase') AS conversions
    FROM core.fact_events WHERE experiment IS NOT NULL GROUP BY 1, 2;
CREATE UNIQUE INDEX ON analytics.mv_experiment_results (experiment, variant);

-- Maintained incrementally (the demo's incremental: true): each burst of
-- traffic recomputes today's row alone, reading today's events through the
-- index on occurred_at.
CREATE INDEX ON core.fact_events (occurred_at);
CREATE MATERIALIZED VIEW analytics.mv_daily_activity AS
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS events,
           count(DISTINCT account_id) AS accounts, sum(amount) AS revenue
    FROM core.fact_events GROUP BY 1;
CREATE UNIQUE INDEX ON analytics.mv_daily_activity (day);

-- A view over a view: refreshed after its base, never from the WAL.
CREATE MATERIALIZED VIEW analytics.mv_revenue_monthly AS
    SELECT date_trunc('month', day) AS month, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM analytics.mv_revenue_summary GROUP BY 1;
CREATE UNIQUE INDEX ON analytics.mv_revenue_monthly (month);

-- Some history, so the views have something to show.
INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
SELECT '2026-09-01'::timestamptz + (i * interval '7 minutes'),
       i % 500, i / 4,
       (ARRAY['visit', 'visit', 'signup', 'activate', 'purchase'])[1 + i % 5],
       CASE WHEN i % 3 = 0 THEN 'checkout_v2' END,
       CASE WHEN i % 3 = 0 THEN (ARRAY['control', 'treatment'])[1 + i % 2] END,
       CASE WHEN i % 5 = 4 THEN (i % 97) + 0.99 ELSE 0 END
FROM generate_series(1, 20000) i;
REFRESH MATERIALIZED VIEW analytics.mv_conversion_funnels;
REFRESH MATERIALIZED VIEW analytics.mv_retention_cohorts;
REFRESH MATERIALIZED VIEW analytics.mv_revenue_summary;
REFRESH MATERIALIZED VIEW analytics.mv_experiment_results;
REFRESH MATERIALIZED VIEW analytics.mv_daily_activity;
REFRESH MATERIALIZED VIEW analytics.mv_revenue_monthly;
