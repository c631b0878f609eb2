package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/maintain"
)

// incrementalSchema adds, to the versus database, what dashboards have next
// to the seed's four views: an accounts table to join, an index on the time
// column the day buckets read, and one view of each shape issue 25 names.
// %s is the start of "recent": a constant, since a definition reading
// now() cannot be maintained.
const incrementalSchema = `
CREATE TABLE core.accounts (id int PRIMARY KEY, plan text NOT NULL);
INSERT INTO core.accounts SELECT g, (ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + g %% 4] FROM generate_series(0, 59999) g;
CREATE INDEX ON core.fact_events (occurred_at);
CREATE MATERIALIZED VIEW analytics.inc_revenue_daily AS
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS events, sum(amount) AS revenue
    FROM core.fact_events GROUP BY 1;
CREATE MATERIALIZED VIEW analytics.inc_account_daily AS
    SELECT account_id, date_trunc('day', occurred_at) AS day, count(*) AS events, sum(amount) AS revenue
    FROM core.fact_events GROUP BY 1, 2;
CREATE MATERIALIZED VIEW analytics.inc_sessions_daily AS
    SELECT date_trunc('day', occurred_at) AS day, event_type, count(DISTINCT session_id) AS sessions
    FROM core.fact_events GROUP BY 1, 2;
CREATE MATERIALIZED VIEW analytics.inc_plan_daily AS
    SELECT date_trunc('day', e.occurred_at) AS day, a.plan, count(*) AS events, sum(e.amount) AS revenue
    FROM core.fact_events e JOIN core.accounts a ON a.id = e.account_id GROUP BY 1, 2;
CREATE MATERIALIZED VIEW analytics.inc_recent_purchases AS
    SELECT event_id, occurred_at, account_id, amount FROM core.fact_events
    WHERE event_type = 'purchase' AND occurred_at >= '%s';`

// dashboardViews are the views incrementalSchema creates.
var dashboardViews = []string{
	"analytics.inc_revenue_daily", "analytics.inc_account_daily", "analytics.inc_sessions_daily",
	"analytics.inc_plan_daily", "analytics.inc_recent_purchases",
}

// incrementalViews: the seed's four, then the shapes.
var incrementalViews = append(append([]string(nil), versusViews...), dashboardViews...)

// dashboardKeys let REFRESH ... CONCURRENTLY run on the dashboard views
// where they are not converted (the versus timer refreshes them).
const dashboardKeys = `
CREATE UNIQUE INDEX ON analytics.inc_revenue_daily (day);
CREATE UNIQUE INDEX ON analytics.inc_account_daily (account_id, day);
CREATE UNIQUE INDEX ON analytics.inc_sessions_daily (day, event_type);
CREATE UNIQUE INDEX ON analytics.inc_plan_daily (day, plan);
CREATE UNIQUE INDEX ON analytics.inc_recent_purchases (event_id, occurred_at);`

// recentStart is where inc_recent_purchases' "recent" begins.
func recentStart() string {
	return time.Now().AddDate(0, 0, -30).UTC().Format(time.RFC3339)
}

// createDashboardViews replaces the seed's four views by the dashboard
// views, each with a unique index: the views of versus -versus-views
// maintained.
func createDashboardViews(ctx context.Context, conn *pgx.Conn) error {
	for _, view := range versusViews {
		if _, err := conn.Exec(ctx, "DROP MATERIALIZED VIEW "+view); err != nil {
			return fmt.Errorf("drop %s: %w", view, err)
		}
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(incrementalSchema, recentStart())+dashboardKeys+"\nANALYZE core.accounts;"); err != nil {
		return fmt.Errorf("create the dashboard views: %w", err)
	}
	return nil
}

const factTable = "core.fact_events"

// twinSuffix names the materialized view, with the same definition, that
// REFRESH ... CONCURRENTLY keeps next to each maintained view.
const twinSuffix = "_concurrently"

// maintainedView is a view converted with maintain.Enable, and its twin.
type maintainedView struct {
	name, twin string
	plan       *maintain.Plan
	timeZone   string
}

// prepareViews analyses every view: those whose changes to the fact table
// name the groups to recompute get a twin and are converted; for the
// others, why not.
func prepareViews(ctx context.Context, pool *pgxpool.Pool) (kept []maintainedView, why map[string]string, err error) {
	why = map[string]string{}
	for _, name := range incrementalViews {
		var oid uint32
		if err := pool.QueryRow(ctx, "SELECT $1::regclass::oid", name).Scan(&oid); err != nil {
			return nil, nil, fmt.Errorf("find %s: %w", name, err)
		}
		plan, err := maintain.Analyze(ctx, pool, name, oid)
		var ineligible *maintain.Ineligible
		if errors.As(err, &ineligible) {
			why[name] = strings.Join(ineligible.Reasons, "; ")
			continue
		} else if err != nil {
			return nil, nil, err
		}
		if s := plan.Sources[factTable]; s == nil || s.Full != "" {
			reason := "it does not read " + factTable + " directly"
			if s != nil {
				reason = "every change to " + factTable + " recomputes it whole: " + s.Full
			}
			why[name] = reason
			continue
		}
		v, err := convert(ctx, pool, name, plan)
		if err != nil {
			return nil, nil, err
		}
		kept = append(kept, v)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return nil, nil, fmt.Errorf("vacuum after converting the views: %w", err)
	}
	return kept, why, nil
}

// convert creates the twin of name from its definition, with a unique
// index on its key, then converts name into a maintained table and reads
// the plan of its definition view, as the daemon does.
func convert(ctx context.Context, pool *pgxpool.Pool, name string, plan *maintain.Plan) (maintainedView, error) {
	v := maintainedView{name: name, twin: name + twinSuffix}
	key := make([]string, len(plan.Key))
	quoted := make([]string, len(plan.Key))
	for i, k := range plan.Key {
		key[i] = plan.Columns[k].Name
		quoted[i] = pgx.Identifier{key[i]}.Sanitize()
	}
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The definition names everything but pg_catalog qualified.
		_, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp")
		if err == nil {
			_, err = tx.Exec(ctx, "CREATE MATERIALIZED VIEW "+v.twin+" AS "+plan.Text)
		}
		if err == nil {
			_, err = tx.Exec(ctx, "CREATE UNIQUE INDEX ON "+v.twin+" ("+strings.Join(quoted, ", ")+")")
		}
		return err
	})
	if err != nil {
		return v, fmt.Errorf("create %s: %w", v.twin, err)
	}
	if err := maintain.Enable(ctx, pool, name, key); err != nil {
		return v, fmt.Errorf("convert %s: %w", name, err)
	}
	var defOID uint32
	var comment string
	if err := pool.QueryRow(ctx, `SELECT c.oid, obj_description(c.oid, 'pg_class') FROM pg_class c
		WHERE c.oid = ($1 || $2)::regclass`, name, maintain.DefinitionSuffix).Scan(&defOID, &comment); err != nil {
		return v, fmt.Errorf("find the definition of %s: %w", name, err)
	}
	marker, ok, err := maintain.ParseMarker(comment)
	if err != nil {
		return v, fmt.Errorf("read the marker of %s: %w", name, err)
	} else if !ok {
		return v, fmt.Errorf("the definition of %s carries no marker: %q", name, comment)
	}
	v.timeZone = marker.TimeZone
	if v.plan, err = maintain.Analyze(ctx, pool, name, defOID); err != nil {
		return v, fmt.Errorf("analyze %s once maintained: %w", name, err)
	}
	fmt.Fprintf(logWriter, "incremental: %s maintained, key (%s), twin %s; %.1fs\n", name, strings.Join(key, ", "), v.twin, since(start))
	return v, nil
}

// differences counts the rows in which a maintained view and its twin
// differ, both ways.
func differences(ctx context.Context, pool *pgxpool.Pool, v maintainedView) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM ((TABLE %[1]s EXCEPT ALL TABLE %[2]s)
		UNION ALL (TABLE %[2]s EXCEPT ALL TABLE %[1]s)) d`, v.name, v.twin)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("compare %s with %s: %w", v.name, v.twin, err)
	}
	return n, nil
}
