package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// explain routes a change as the daemon would: the views reading the table
// first, then the views built on them, each after its bases; a view's
// refresh sets off its dependents only; a table no view reads, nothing.
func TestExplain(t *testing.T) {
	ctx := context.Background()
	cluster, _ := startCluster(t, `CREATE SCHEMA core; CREATE SCHEMA analytics;
		CREATE TABLE core.events (id bigint PRIMARY KEY, account_id int, amount int);
		CREATE TABLE core.accounts (id int PRIMARY KEY, name text);
		CREATE TABLE core.audit (id int PRIMARY KEY);
		CREATE VIEW core.named_events AS SELECT e.*, a.name FROM core.events e JOIN core.accounts a ON a.id = e.account_id;
		CREATE MATERIALIZED VIEW analytics.daily AS SELECT account_id, sum(amount) AS amount FROM core.events GROUP BY 1;
		CREATE UNIQUE INDEX ON analytics.daily (account_id);
		CREATE MATERIALIZED VIEW analytics.by_name AS SELECT name, count(*) AS n FROM core.named_events GROUP BY 1;
		CREATE UNIQUE INDEX ON analytics.by_name (name);
		CREATE MATERIALIZED VIEW analytics.top AS SELECT account_id FROM analytics.daily ORDER BY amount DESC LIMIT 10;
		CREATE MATERIALIZED VIEW analytics.report AS SELECT d.account_id, t.account_id IS NOT NULL AS top FROM analytics.daily d LEFT JOIN analytics.top t USING (account_id);
		CREATE TABLE core.nokey (x int);
		CREATE MATERIALIZED VIEW analytics.nokey AS SELECT count(*) AS n FROM core.nokey;`)
	explain := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"explain", "--database-url", cluster.URL("postgres"), "--schemas", "analytics"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	waves := func(args ...string) [][]string {
		t.Helper()
		out, err := explain(append(args, "--json")...)
		if err != nil {
			t.Fatalf("explain %v: %v\n%s", args, err, out)
		}
		var rep struct {
			Waves [][]struct{ View string } `json:"waves"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("explain %v --json: %v\n%s", args, err, out)
		}
		names := [][]string{}
		for _, w := range rep.Waves {
			var ws []string
			for _, v := range w {
				ws = append(ws, v.View)
			}
			names = append(names, ws)
		}
		return names
	}

	if got, want := waves("core.events"), [][]string{{"analytics.by_name", "analytics.daily"}, {"analytics.top"}, {"analytics.report"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("a change to core.events: %q, want %q", got, want)
	}
	// Through the plain view only.
	if got, want := waves("core.accounts"), [][]string{{"analytics.by_name"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("a change to core.accounts: %q, want %q", got, want)
	}
	if got, want := waves("analytics.top"), [][]string{{"analytics.top"}, {"analytics.report"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("a refresh of analytics.top: %q, want %q", got, want)
	}
	if got := waves("core.audit"); len(got) != 0 {
		t.Errorf("a change to core.audit, which no view reads: %q", got)
	}

	out, err := explain("core.events")
	for _, want := range []string{"refreshes 4 view(s) in 3 wave(s)", "wave 3", "analytics.report: debounce 2s, max_wait 30s", "after analytics.daily, analytics.top", "never refreshed"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("explain core.events lacks %q (%v):\n%s", want, err, out)
		}
	}
	// A target on the last view of the cascade is its bases' too.
	conf := filepath.Join(t.TempDir(), "mvrefresher.yaml")
	if err := os.WriteFile(conf, []byte("views:\n  analytics.report:\n    max_staleness: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = explain("--config", conf, "core.events")
	for _, want := range []string{
		"analytics.report: max_staleness 30s, min_interval",
		"analytics.daily: max_staleness 30s (so that analytics.report meets its own)",
		"analytics.by_name: debounce 2s, max_wait 30s",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("explain with a target on analytics.report lacks %q (%v):\n%s", want, err, out)
		}
	}
	if out, err := explain("core.nosuch"); err == nil || !strings.Contains(err.Error(), `core.nosuch: no such table or view`) {
		t.Errorf("explain core.nosuch: %v\n%s", err, out)
	}

	out, err = explain("analytics.nokey")
	if err != nil || !strings.Contains(out, "analytics.nokey is not managed: no-replica-identity") {
		t.Errorf("explain analytics.nokey: %v\n%s", err, out)
	}
}

// graph draws what discovery walked: sources, the plain views in between,
// managed views and their bases, and the views not managed with why.
func TestGraph(t *testing.T) {
	ctx := context.Background()
	cluster, _ := startCluster(t, `CREATE SCHEMA core; CREATE SCHEMA analytics;
		CREATE TABLE core.events (id bigint PRIMARY KEY, account_id int, amount int);
		CREATE TABLE core.accounts (id int PRIMARY KEY, name text);
		CREATE TABLE core.nokey (x int);
		CREATE VIEW core.named_events AS SELECT e.*, a.name FROM core.events e JOIN core.accounts a ON a.id = e.account_id;
		CREATE MATERIALIZED VIEW analytics.daily AS SELECT account_id, sum(amount) AS amount FROM core.events GROUP BY 1;
		CREATE MATERIALIZED VIEW analytics.by_name AS SELECT name, count(*) AS n FROM core.named_events GROUP BY 1;
		CREATE MATERIALIZED VIEW analytics.top AS SELECT account_id FROM analytics.daily ORDER BY amount DESC LIMIT 10;
		CREATE MATERIALIZED VIEW analytics.nokey AS SELECT count(*) AS n FROM core.nokey;`)
	graph := func(format string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"graph", "--database-url", cluster.URL("postgres"), "--schemas", "analytics", "--format", format}, &out, &errOut); err != nil {
			t.Fatalf("graph --format %s: %v\n%s", format, err, errOut.String())
		}
		return out.String()
	}
	var g struct {
		Nodes []struct{ Name, Kind, Problem string }
		Edges [][2]string
	}
	if err := json.Unmarshal([]byte(graph("json")), &g); err != nil {
		t.Fatal(err)
	}
	wantEdges := [][2]string{
		{"analytics.daily", "analytics.top"},
		{"core.accounts", "core.named_events"},
		{"core.events", "analytics.daily"},
		{"core.events", "core.named_events"},
		{"core.named_events", "analytics.by_name"},
		{"core.nokey", "analytics.nokey"},
	}
	if !reflect.DeepEqual(g.Edges, wantEdges) {
		t.Errorf("edges %q, want %q", g.Edges, wantEdges)
	}
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.Name] = n.Kind
		if n.Name == "analytics.nokey" && n.Problem != "no-replica-identity" {
			t.Errorf("analytics.nokey's problem: %q", n.Problem)
		}
	}
	want := map[string]string{"core.events": "table", "core.accounts": "table", "core.nokey": "table", "core.named_events": "view",
		"analytics.daily": "managed", "analytics.by_name": "managed", "analytics.top": "managed", "analytics.nokey": "unmanaged"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("nodes %v, want %v", kinds, want)
	}
	if dot := graph("dot"); !strings.Contains(dot, `"core.named_events" -> "analytics.by_name";`) {
		t.Errorf("dot output lacks the plain view's edge:\n%s", dot)
	}
	if m := graph("mermaid"); !strings.HasPrefix(m, "flowchart LR\n") || strings.Count(m, " --> ") != len(wantEdges) {
		t.Errorf("mermaid output:\n%s", m)
	}
}
