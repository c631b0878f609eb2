package inspect_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
	"github.com/mvrefresher/mvrefresher/maintain"
)

// incrementalSQL has a fact table under REPLICA IDENTITY DEFAULT (its key
// does not carry the day a row counts in), a dimension table under FULL, a
// table whose identity index carries the hour, and views of them: two to
// maintain, one marked incremental but not converted, one that cannot be
// maintained (a window function), one not marked.
const incrementalSQL = `
CREATE TABLE app.events (id bigint PRIMARY KEY, at timestamptz NOT NULL, account int NOT NULL, amount int NOT NULL);
CREATE TABLE app.accounts (id int PRIMARY KEY, plan text NOT NULL);
ALTER TABLE app.accounts REPLICA IDENTITY FULL;
CREATE TABLE app.clicks (id bigint PRIMARY KEY, at timestamptz NOT NULL, n int NOT NULL);
CREATE INDEX ON app.events (at);
CREATE INDEX ON app.events (account);
CREATE INDEX ON app.accounts (plan);
CREATE INDEX ON app.clicks (at);
CREATE UNIQUE INDEX clicks_identity ON app.clicks (id, at);
ALTER TABLE app.clicks REPLICA IDENTITY USING INDEX clicks_identity;
INSERT INTO app.accounts VALUES (1, 'free'), (2, 'pro');
INSERT INTO app.events SELECT g, timestamptz '2026-01-01 00:00+00' + g * interval '5 hours', 1 + g % 2, g FROM generate_series(1, 20) g;
INSERT INTO app.clicks SELECT g, timestamptz '2026-01-01 00:00+00' + g * interval '20 minutes', g FROM generate_series(1, 20) g;

CREATE MATERIALIZED VIEW app.mv_daily AS
	SELECT date_trunc('day', e.at) AS day, a.plan, count(*) AS n, sum(e.amount) AS total
	FROM app.events e JOIN app.accounts a ON a.id = e.account GROUP BY 1, 2;
CREATE MATERIALIZED VIEW app.mv_hourly AS SELECT date_trunc('hour', at) AS hour, sum(n) AS n FROM app.clicks GROUP BY 1;
CREATE UNIQUE INDEX ON app.mv_hourly (hour);
CREATE MATERIALIZED VIEW app.mv_pending AS SELECT account, count(*) AS n FROM app.events WHERE amount > 3 GROUP BY account;
CREATE UNIQUE INDEX ON app.mv_pending (account);
CREATE MATERIALIZED VIEW app.mv_ranked AS SELECT id, rank() OVER (ORDER BY amount) AS r FROM app.events;
CREATE UNIQUE INDEX ON app.mv_ranked (id);
CREATE MATERIALIZED VIEW app.mv_plain AS SELECT plan, count(*) AS n FROM app.accounts GROUP BY plan;
CREATE UNIQUE INDEX ON app.mv_plain (plan);`

// newIncrementalEnv is an env with incrementalSQL, app.mv_daily and
// app.mv_hourly converted as the daemon converts them at start, and every
// view but app.mv_plain marked incremental.
func newIncrementalEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, incrementalSQL)
	for _, name := range []string{"app.mv_daily", "app.mv_hourly"} {
		enableIncremental(t, e.pool, name)
	}
	incremental := true
	e.cfg.Views = map[string]config.View{}
	for _, name := range []string{"app.mv_daily", "app.mv_hourly", "app.mv_pending", "app.mv_ranked"} {
		e.cfg.Views[name] = config.View{Incremental: &incremental}
	}
	return e
}

// enableIncremental converts the materialized view name into a maintained
// table, as daemon/maintained.go does.
func enableIncremental(t *testing.T, pool *pgxpool.Pool, name string) {
	t.Helper()
	ctx := context.Background()
	var oid uint32
	if err := pool.QueryRow(ctx, "SELECT $1::regclass::oid", name).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	plan, err := maintain.Analyze(ctx, pool, name, oid)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]string, len(plan.Key))
	for i, k := range plan.Key {
		key[i] = plan.Columns[k].Name
	}
	if err := maintain.Enable(ctx, pool, name, key); err != nil {
		t.Fatal(err)
	}
}

func (e *env) inspector() *inspect.Inspector {
	e.t.Helper()
	in, err := inspect.Open(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(in.Close)
	return in
}

func TestIncremental_StatusAndExplain(t *testing.T) {
	e := newIncrementalEnv(t)
	ctx := context.Background()
	rep, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	byView := map[string]*inspect.Incremental{}
	for _, v := range rep.Views {
		byView[v.View] = v.Incremental
	}
	if m := byView["app.mv_daily"]; m == nil || !m.Maintained || !m.Configured || len(m.Ineligible) > 0 || !slices.Equal(m.Key, []string{"day", "plan"}) {
		t.Errorf("status of the maintained app.mv_daily: %+v, want maintained by (day, plan)", m)
	}
	if m := byView["app.mv_pending"]; m == nil || m.Maintained || !m.Configured || len(m.Ineligible) > 0 ||
		!strings.Contains(m.Summary(), "not converted yet") {
		t.Errorf("status of app.mv_pending, marked but not converted: %+v", m)
	}
	if m := byView["app.mv_ranked"]; m == nil || m.Maintained || !slices.Equal(m.Ineligible, []string{"its query has a window function"}) {
		t.Errorf("status of app.mv_ranked (a window function): %+v, want ineligible for the window function", m)
	}
	if m := byView["app.mv_plain"]; m != nil {
		t.Errorf("status of app.mv_plain, not marked: %+v, want no incremental part", m)
	}
	for _, v := range rep.Views {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(out), `"incremental"`); has != (v.View != "app.mv_plain") {
			t.Errorf("status --json of %s: %s", v.View, out)
		}
	}

	in := e.inspector()
	explained := func(name string) *inspect.Incremental {
		t.Helper()
		rep, err := in.Explain(ctx, name)
		if err != nil || len(rep.Waves) == 0 {
			t.Fatalf("explain %s: %+v, %v", name, rep, err)
		}
		return rep.Waves[0][0].Incremental
	}
	m := explained("app.mv_daily")
	if m == nil || len(m.Sources) != 2 {
		t.Fatalf("explain app.mv_daily: %+v, want its two sources", m)
	}
	events, accounts := m.Sources[1], m.Sources[0]
	if events.Table != "app.events" || events.Full != "" || !slices.Equal(events.Reads, []string{"at"}) || events.OldRowCovers ||
		events.Identity != "REPLICA IDENTITY DEFAULT (id)" {
		t.Errorf("app.events under REPLICA IDENTITY DEFAULT: %+v, want its rows followed by at, not covered by the old row", events)
	}
	if accounts.Table != "app.accounts" || accounts.Full != "" || !slices.Equal(accounts.Reads, []string{"plan"}) || !accounts.OldRowCovers {
		t.Errorf("app.accounts under REPLICA IDENTITY FULL: %+v, want followed by plan, covered", accounts)
	}
	if s := events.Follows(); !strings.Contains(s, "UPDATEs and DELETEs recompute the whole view") {
		t.Errorf("app.events follows: %s", s)
	}
	m = explained("app.mv_pending")
	if m == nil || len(m.Sources) != 1 || !strings.Contains(m.Sources[0].Filter, "amount > 3") ||
		!strings.Contains(m.Sources[0].Follows(), "rejects name nothing") {
		t.Errorf("explain app.mv_pending (WHERE amount > 3): %+v, want its filter shown", m)
	}
	m = explained("app.mv_hourly")
	if m == nil || len(m.Sources) != 1 || !m.Sources[0].OldRowCovers || !strings.Contains(m.Sources[0].Identity, "USING INDEX") {
		t.Errorf("explain app.mv_hourly, its source under USING INDEX (id, at): %+v, want covered", m)
	}
	// A change to a table lists every view it refreshes, each with how.
	rep2, err := in.Explain(ctx, "app.events")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep2.Waves[0] {
		if (v.Incremental == nil) != (v.View == "app.mv_plain") {
			t.Errorf("explain app.events, view %s: incremental %+v", v.View, v.Incremental)
		}
	}
}

func TestIncremental_Check(t *testing.T) {
	e := newIncrementalEnv(t)
	ctx := context.Background()
	in := e.inspector()
	findings, err := in.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byView := map[string][]catalog.Finding{}
	for _, f := range findings {
		byView[f.View] = append(byView[f.View], f)
	}
	if fs := byView["app.mv_ranked"]; len(fs) != 1 || fs[0].Code != "incremental-ineligible" || fs[0].Severity != catalog.SeverityError ||
		!strings.Contains(fs[0].Message, "window function") {
		t.Errorf("check app.mv_ranked (marked, a window function): %+v, want one error saying why", fs)
	}
	fs := byView["app.mv_daily"]
	if len(fs) != 1 || fs[0].Code != "incremental-replica-identity" || fs[0].Severity != catalog.SeverityWarning {
		t.Fatalf("check app.mv_daily: %+v, want one warning, for app.events (app.accounts is FULL)", fs)
	}
	for _, want := range []string{"UPDATEs and DELETEs on app.events recompute the whole view", "REPLICA IDENTITY DEFAULT (id)", "an append-only table needs nothing",
		"ALTER TABLE app.events REPLICA IDENTITY USING INDEX <a unique index on (id, at), its columns NOT NULL>", "REPLICA IDENTITY FULL"} {
		if !strings.Contains(fs[0].Message, want) {
			t.Errorf("the warning on app.events lacks %q: %s", want, fs[0].Message)
		}
	}
	// A maintained table is never refreshed CONCURRENTLY: no advice about
	// a unique index (app.mv_daily had none as a materialized view).
	if fs := byView["app.mv_hourly"]; len(fs) != 0 {
		t.Errorf("check app.mv_hourly (its source's identity index carries the hour): %+v, want nothing", fs)
	}
	defer func() {
		// Without an index leading with at, recomputing an hour would read
		// the whole table: any change recomputes the whole view.
		if _, err := e.pool.Exec(ctx, "DROP INDEX app.clicks_at_idx"); err != nil {
			t.Fatal(err)
		}
		findings, err := e.inspector().Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []catalog.Finding
		for _, f := range findings {
			if f.View == "app.mv_hourly" {
				got = append(got, f)
			}
		}
		if len(got) != 1 || got[0].Code != "incremental-whole-view" || !strings.Contains(got[0].Message, "no index leads with at") {
			t.Errorf("check app.mv_hourly without an index on app.clicks (at): %+v, want a warning saying so", got)
		}
	}()
	if fs := byView["app.mv_pending"]; len(fs) != 1 || fs[0].Code != "incremental-replica-identity" {
		t.Errorf("check app.mv_pending (marked, not converted): %+v, want the warning for app.events", fs)
	}

	// views: keys naming maintained tables are views.
	setup, err := in.CheckSetup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		if f.Code == "unknown-view" {
			t.Errorf("check of views: keys naming maintained tables: %+v", f)
		}
	}

	// After the fix, app.mv_daily's warning is gone (app.mv_pending's
	// stays: it is keyed by account).
	if _, err := e.pool.Exec(ctx, `CREATE UNIQUE INDEX events_identity ON app.events (id, at);
		ALTER TABLE app.events REPLICA IDENTITY USING INDEX events_identity`); err != nil {
		t.Fatal(err)
	}
	findings, err = e.inspector().Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if f.Code == "incremental-replica-identity" && f.View == "app.mv_daily" {
			t.Errorf("after REPLICA IDENTITY USING INDEX (id, at): %+v", f)
		}
	}
}

func TestIncremental_Verify(t *testing.T) {
	e := newIncrementalEnv(t)
	ctx := context.Background()
	// A session TimeZone other than the one the table was computed under:
	// days begin at other hours there.
	e.cfg.DatabaseURL += "&timezone=Pacific/Kiritimati"
	got, err := e.verify("app.mv_daily", "app.mv_hourly")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		if !v.Equal || v.ViewRows == 0 || v.ViewRows != v.DefinitionRows {
			t.Errorf("verify of the maintained %s just converted: %+v, want equal", v.View, v)
		}
	}
	// A change the table has not been maintained for.
	if _, err := e.pool.Exec(ctx, "UPDATE app.accounts SET plan = 'team' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	got, err = e.verify("app.mv_daily")
	if err != nil {
		t.Fatal(err)
	}
	if v := got[0]; v.Equal || v.Missing == 0 || v.Missing != v.Extra || !strings.Contains(v.MissingRows[0], ",team,") ||
		!strings.Contains(v.ExtraRows[0], ",pro,") {
		t.Errorf("verify of app.mv_daily after an unmaintained update: %+v, want the team rows missing and the pro rows extra", v)
	}
	if _, err := e.verify("app.mv_daily__definition"); err == nil || !strings.Contains(err.Error(), "no such materialized view or maintained table") {
		t.Errorf("verify of a definition view: %v", err)
	}
}

// The WAL carries each partition's replica identity: the fix says so.
func TestIncremental_CheckPartitionedSource(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE app.sales (id bigint, at date NOT NULL, region text NOT NULL, amount int NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.sales_2026 PARTITION OF app.sales FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON app.sales (region);
INSERT INTO app.sales VALUES (1, '2026-02-01', 'eu', 5);
CREATE MATERIALIZED VIEW app.mv_regions AS SELECT region, sum(amount) AS total FROM app.sales GROUP BY region;`)
	enableIncremental(t, e.pool, "app.mv_regions")
	findings, err := e.inspector().Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].Code != "incremental-replica-identity" ||
		!strings.Contains(findings[0].Message, "on each partition of app.sales (the WAL carries each partition's identity), ALTER TABLE <partition> REPLICA IDENTITY USING INDEX <a unique index on (id, at, region)") {
		t.Errorf("check of a view maintained from a partitioned table keyed by region: %+v", findings)
	}
}

// TestIncremental_ViewOnAMaintainedView: explain and check say how a
// maintained view built on a maintained view follows it: through its
// maintenances, or, reading a column of it other than its key, or built
// on one whose maintenances name no rows of it, not.
func TestIncremental_ViewOnAMaintainedView(t *testing.T) {
	e := newIncrementalEnv(t)
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `
CREATE MATERIALIZED VIEW app.mv_days AS SELECT date_trunc('day', hour) AS day, sum(n) AS n FROM app.mv_hourly GROUP BY 1;
CREATE INDEX ON app.mv_hourly (n);
CREATE MATERIALIZED VIEW app.mv_sizes AS SELECT n, count(*) AS hours FROM app.mv_hourly GROUP BY n;
CREATE INDEX ON app.mv_daily (plan);
CREATE MATERIALIZED VIEW app.mv_plans AS SELECT plan, sum(n) AS n FROM app.mv_daily GROUP BY plan;`); err != nil {
		t.Fatal(err)
	}
	incremental := true
	for _, name := range []string{"app.mv_days", "app.mv_sizes", "app.mv_plans"} {
		enableIncremental(t, e.pool, name)
		e.cfg.Views[name] = config.View{Incremental: &incremental}
	}
	in := e.inspector()
	source := func(name string) inspect.IncrementalSource {
		t.Helper()
		rep, err := in.Explain(ctx, name)
		if err != nil || len(rep.Waves) == 0 || rep.Waves[0][0].Incremental == nil || len(rep.Waves[0][0].Incremental.Sources) != 1 {
			t.Fatalf("explain %s: %+v, %v", name, rep, err)
		}
		return rep.Waves[0][0].Incremental.Sources[0]
	}
	days := source("app.mv_days")
	if days.Table != "app.mv_hourly" || !days.Maintained || days.Full != "" || !strings.Contains(days.Follows(), "followed through its maintenances, by the rows each recomputes (by hour") {
		t.Errorf("explain app.mv_days, built on the maintained app.mv_hourly by its key: %+v (%s)", days, days.Follows())
	}
	sizes := source("app.mv_sizes")
	want := "app.mv_sizes reads columns of app.mv_hourly other than its key (n)"
	if !sizes.Maintained || sizes.Full != want || !strings.Contains(sizes.Follows(), "each of its maintenances recomputes the whole view after it: "+want) {
		t.Errorf("explain app.mv_sizes, built on app.mv_hourly by a column other than its key: %+v (%s)", sizes, sizes.Follows())
	}
	// app.mv_daily's day comes from app.events, its plan from app.accounts:
	// its maintenances name no rows of it.
	plans := source("app.mv_plans")
	want = "no maintenance of app.mv_daily names rows of it"
	if !plans.Maintained || !strings.Contains(plans.Follows(), "each of its maintenances recomputes the whole view after it: "+want) {
		t.Errorf("explain app.mv_plans, built on app.mv_daily, keyed by a fact's day and a dimension's plan: %+v (%s)", plans, plans.Follows())
	}
	want = "app.mv_sizes reads columns of app.mv_hourly other than its key (n)"
	findings, err := in.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	warned, plansWarned := false, false
	for _, f := range findings {
		switch f.View {
		case "app.mv_plans":
			plansWarned = plansWarned || f.Code == "incremental-whole-view" && strings.Contains(f.Message, "no maintenance of app.mv_daily names rows of it")
		case "app.mv_days":
			t.Errorf("check app.mv_days: %+v, want nothing (the WAL does not carry app.mv_hourly: its replica identity is not a concern)", f)
		case "app.mv_sizes":
			warned = true
			if f.Code != "incremental-whole-view" || !strings.Contains(f.Message, want) {
				t.Errorf("check app.mv_sizes: %+v, want a warning saying %q", f, want)
			}
		}
	}
	if !warned {
		t.Errorf("check app.mv_sizes: no finding, want a warning saying %q", want)
	}
	if !plansWarned {
		t.Errorf("check app.mv_plans: %+v, want a warning that its base's maintenances name no rows of it", findings)
	}
}
