package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheck_SeedsNowColumnFailsTheCheck(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE SCHEMA analytics;
		CREATE TABLE fact_events (id bigint PRIMARY KEY, account_id int, step text, session_id bigint);
		CREATE MATERIALIZED VIEW analytics.mv_conversion_funnels AS
		    SELECT account_id, step AS funnel_step, count(DISTINCT session_id) AS sessions, NOW() AS last_refreshed_at
		    FROM fact_events GROUP BY 1, 2;
		CREATE UNIQUE INDEX ON analytics.mv_conversion_funnels (account_id, funnel_step);`)
	check := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"check", "--database-url", cluster.URL("postgres"), "--schemas", "analytics"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	out, err := check()
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("check on the seed's view: err %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"analytics.mv_conversion_funnels", "error", "nondeterministic-output", "now()", `"last_refreshed_at"`} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	out, _ = check("--json")
	var doc struct {
		Findings []struct{ View, Severity, Code, Message string } `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check --json is not JSON: %v\n%s", err, out)
	}
	if len(doc.Findings) != 1 || doc.Findings[0].Code != "nondeterministic-output" || doc.Findings[0].Severity != "error" || doc.Findings[0].View != "analytics.mv_conversion_funnels" {
		t.Errorf("check --json findings: %+v", doc.Findings)
	}

	// The seed's fix: freshness leaves the view for the refresh log.
	if _, err := pool.Exec(ctx, `DROP MATERIALIZED VIEW analytics.mv_conversion_funnels;
		CREATE MATERIALIZED VIEW analytics.mv_conversion_funnels AS
		    SELECT account_id, step AS funnel_step, count(DISTINCT session_id) AS sessions FROM fact_events GROUP BY 1, 2;
		CREATE UNIQUE INDEX ON analytics.mv_conversion_funnels (account_id, funnel_step);`); err != nil {
		t.Fatal(err)
	}
	if out, err := check(); err != nil || !strings.Contains(out, "no problems found") {
		t.Fatalf("check after the fix: %v\n%s", err, out)
	}
	out, err = check("--json")
	var fixed struct {
		Stream *struct {
			DecodingOn string `json:"decoding_on"`
		} `json:"stream"`
		Findings []any `json:"findings"`
	}
	if err != nil || json.Unmarshal([]byte(out), &fixed) != nil || fixed.Findings == nil || len(fixed.Findings) > 0 ||
		fixed.Stream == nil || !strings.HasPrefix(fixed.Stream.DecodingOn, "primary ") {
		t.Fatalf("check --json after the fix: %v\n%s", err, out)
	}
}
