package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/maintain"
)

// explain, status, check and verify say how a view marked incremental is
// maintained, or why it cannot be, in their text output.
func TestIncrementalInTheReports(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE SCHEMA app;
		CREATE TABLE app.events (id bigint PRIMARY KEY, at timestamptz NOT NULL, amount int NOT NULL);
		CREATE INDEX ON app.events (at);
		INSERT INTO app.events SELECT g, timestamptz '2026-01-01 00:00+00' + g * interval '7 hours', g FROM generate_series(1, 10) g;
		CREATE MATERIALIZED VIEW app.daily AS SELECT date_trunc('day', at) AS day, sum(amount) AS total FROM app.events GROUP BY 1;
		CREATE MATERIALIZED VIEW app.recent AS SELECT id FROM app.events WHERE at > now() - interval '1 day';
		CREATE UNIQUE INDEX ON app.recent (id);`)
	var oid uint32
	if err := pool.QueryRow(ctx, "SELECT 'app.daily'::regclass::oid").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	plan, err := maintain.Analyze(ctx, pool, "app.daily", oid)
	if err != nil {
		t.Fatal(err)
	}
	if err := maintain.Enable(ctx, pool, "app.daily", []string{plan.Columns[plan.Key[0]].Name}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "mvrefresher.yaml")
	if err := os.WriteFile(conf, []byte("database_url: "+cluster.URL("postgres")+"\nschemas: [app]\nviews:\n  app.daily: {incremental: true}\n  app.recent: {incremental: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	command := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{args[0], "--config", conf}, args[1:]...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	wantLines := func(what, out string, err error, wantExit int, want ...string) {
		t.Helper()
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		if code != wantExit {
			t.Errorf("%s: exit %d (%v), want %d\n%s", what, code, err, wantExit, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}

	out, err := command("explain", "app.events")
	wantLines("explain app.events", out, err, 0,
		"    maintained incrementally (key day)\n      app.events: INSERTs followed row by row (by at); UPDATEs and DELETEs recompute the whole view: REPLICA IDENTITY DEFAULT (id) does not carry those columns\n",
		"    marked incremental, but cannot be maintained incrementally: its query calls now()")
	out, err = command("status")
	wantLines("status", out, err, 0, "\napp.daily: maintained incrementally (key day)\n", "\napp.recent: marked incremental, but cannot be maintained incrementally")
	out, err = command("check")
	wantLines("check", out, err, 1, "app.daily\n  warning  incremental-replica-identity: UPDATEs and DELETEs on app.events recompute the whole view",
		"app.recent\n  error    incremental-ineligible: marked incremental, but cannot be maintained incrementally")
	out, err = command("verify", "app.daily")
	wantLines("verify app.daily", out, err, 0, "app.daily: equal to its definition (")
}
