package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
	"github.com/mvrefresher/mvrefresher/internal/wait"
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

// checkFinding is a finding as check --json prints it.
type checkFinding struct{ View, Severity, Code, Message string }

// preflight runs check, and run, with a config file and flags against one
// throwaway PostgreSQL.
type preflight struct {
	t      *testing.T
	config string // the config file's path
}

// writeConfig replaces the config file's content.
func (p preflight) writeConfig(yaml string) {
	p.t.Helper()
	if err := os.WriteFile(p.config, []byte(yaml), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// check runs check --json and returns its findings and exit status; the
// text output must agree on the exit status.
func (p preflight) check(flags ...string) ([]checkFinding, int) {
	p.t.Helper()
	status := func(err error) int {
		var exit exitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit):
			return exit.code
		}
		p.t.Fatalf("check: %v", err)
		return -1
	}
	var out bytes.Buffer
	code := status(run(context.Background(), append([]string{"check", "--config", p.config, "--json"}, flags...), &out, &out))
	var doc struct {
		StreamError string         `json:"stream_error"`
		Findings    []checkFinding `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		p.t.Fatalf("check --json is not JSON: %v\n%s", err, out.String())
	}
	if doc.StreamError != "" {
		p.t.Fatalf("check: stream error %s", doc.StreamError)
	}
	var text bytes.Buffer
	if textCode := status(run(context.Background(), append([]string{"check", "--config", p.config}, flags...), &text, &text)); textCode != code {
		p.t.Errorf("check exits %d, check --json %d:\n%s", textCode, code, text.String())
	}
	for _, f := range doc.Findings {
		if !strings.Contains(text.String(), f.Code+": "+f.Message) {
			p.t.Errorf("check's text output lacks %s: %s:\n%s", f.Code, f.Message, text.String())
		}
	}
	if code == 0 && !strings.Contains(text.String(), "no problems found") {
		p.t.Errorf("check exits 0 without saying no problems found:\n%s", text.String())
	}
	return doc.Findings, code
}

// wantRefusal checks that check exits 1 with exactly the errors codes, each
// in view (codes of setup findings have view ""), and returns their
// messages by code.
func (p preflight) wantRefusal(findings []checkFinding, code int, want map[string]string) map[string]string {
	p.t.Helper()
	if code != 1 {
		p.t.Errorf("check exits %d, want 1 for %v", code, want)
	}
	got := map[string]string{}
	messages := map[string]string{}
	for _, f := range findings {
		if f.Severity == "error" {
			got[f.Code] = f.View
			messages[f.Code] = f.Message
		}
	}
	if !maps.Equal(got, want) {
		p.t.Errorf("check's errors (code: view) %v, want %v: %+v", got, want, findings)
	}
	return messages
}

// runRefuses runs the daemon, which must refuse to start with an error
// containing want.
func (p preflight) runRefuses(want string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs bytes.Buffer
	err := run(ctx, []string{"run", "--config", p.config, "--listen", ""}, &logs, &logs)
	if err == nil || !strings.Contains(err.Error(), want) {
		p.t.Errorf("run: %v, want a refusal with check's message %q\n%s", err, want, logs.String())
	}
}

// runWaits runs the daemon, which must log an error containing want (its
// quotes escaped, as the log's text format writes them) and go on waiting
// (it tries again with backoff) until stopped.
func (p preflight) runWaits(want string) {
	p.t.Helper()
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- run(ctx, []string{"run", "--config", p.config, "--listen", ""}, &logs, &logs) }()
	if err := wait.Until("run to say why it cannot start", 30*time.Second, func() (bool, error) { return strings.Contains(logs.String(), strings.ReplaceAll(want, `"`, `\"`)), nil }); err != nil {
		p.t.Errorf("%v: want %q:\n%s", err, want, logs.String())
	}
	select {
	case err := <-exited:
		p.t.Fatalf("run exited (%v) instead of waiting for room for its slot:\n%s", err, logs.String())
	default:
	}
	cancel()
	if err := <-exited; err != nil {
		p.t.Errorf("run after a stop: %v", err)
	}
}

func TestCheck_RefusesWhatRunRefusesForTheRoleAndTheConfiguration(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE SCHEMA app;
		CREATE TABLE app.src (id int PRIMARY KEY);
		CREATE MATERIALIZED VIEW app.mv_totals AS SELECT count(*) AS n FROM app.src;
		CREATE UNIQUE INDEX ON app.mv_totals (n);
		CREATE ROLE checker LOGIN;
		GRANT USAGE ON SCHEMA app TO checker;
		ALTER TABLE app.src OWNER TO checker;
		ALTER MATERIALIZED VIEW app.mv_totals OWNER TO checker;`)
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	p := preflight{t: t, config: filepath.Join(t.TempDir(), "mvrefresher.yaml")}
	base := "database_url: " + strings.Replace(cluster.URL("postgres"), "postgres@", "checker@", 1) + "\nschemas: [app]\n"

	// A typo in a views: key, a role without REPLICATION, and no CREATE on
	// public (PostgreSQL 15 and later) for the refresh log.
	p.writeConfig(base + "views:\n  app.mv_total: {debounce: 1s}\n")
	findings, code := p.check()
	messages := p.wantRefusal(findings, code, map[string]string{"unknown-view": "app.mv_total", "replication-connection": "", "refresh-log": ""})
	for code, want := range map[string]string{
		"unknown-view":           "did you mean app.mv_totals?",
		"replication-connection": `ALTER ROLE "checker" REPLICATION`,
		"refresh-log":            "GRANT CREATE ON SCHEMA public TO checker",
	} {
		if !strings.Contains(messages[code], want) {
			t.Errorf("%s: %q lacks the fix %q", code, messages[code], want)
		}
	}
	p.runRefuses(messages["unknown-view"])

	p.writeConfig(base + "views:\n  app.mv_totals: {debounce: 1s}\n")
	findings, code = p.check()
	p.wantRefusal(findings, code, map[string]string{"replication-connection": "", "refresh-log": ""})
	p.runRefuses(messages["replication-connection"])

	exec("ALTER ROLE checker REPLICATION")
	findings, code = p.check()
	p.wantRefusal(findings, code, map[string]string{"refresh-log": ""})
	p.runRefuses(messages["refresh-log"])

	exec("GRANT CREATE ON SCHEMA public TO checker")
	if findings, code := p.check(); code != 0 || len(findings) > 0 {
		t.Fatalf("check of a healthy setup: exit %d, %+v", code, findings)
	}

	// min_interval keeps the view from meeting its target.
	p.writeConfig(base + "views:\n  app.mv_totals: {min_interval: 1m, max_staleness: 10s}\n")
	findings, code = p.check()
	messages = p.wantRefusal(findings, code, map[string]string{"min-interval-over-target": "app.mv_totals"})
	if want := "min_interval (1m0s) is longer than its max_staleness 10s"; !strings.Contains(messages["min-interval-over-target"], want) {
		t.Errorf("min-interval-over-target: %q lacks %q", messages["min-interval-over-target"], want)
	}
}

func TestCheck_RefusesWhatRunRefusesForTheServer(t *testing.T) {
	ctx := context.Background()
	cluster := pgtest.Start(t, localpg.Options{Settings: map[string]string{
		"wal_level": "replica", "max_replication_slots": "1", "max_wal_senders": "1"}})
	pool, err := pgxpool.New(ctx, cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// The one slot and the one walsender the server allows are taken.
	if _, err := pool.Exec(ctx, "SELECT pg_create_physical_replication_slot('taken')"); err != nil {
		t.Fatal(err)
	}
	sender := openReplicationConnection(t, cluster.URL("postgres"))

	p := preflight{t: t, config: filepath.Join(t.TempDir(), "mvrefresher.yaml")}
	p.writeConfig("database_url: " + cluster.URL("postgres") + "\n")
	findings, code := p.check()
	messages := p.wantRefusal(findings, code, map[string]string{"wal-level": "", "replication-slot": "", "replication-connection": ""})
	for code, want := range map[string]string{
		"wal-level":              "ALTER SYSTEM SET wal_level = logical",
		"replication-slot":       "raise max_replication_slots",
		"replication-connection": "raise it in postgresql.conf",
	} {
		if !strings.Contains(messages[code], want) {
			t.Errorf("%s: %q lacks the fix %q", code, messages[code], want)
		}
	}
	p.runRefuses(messages["wal-level"])

	// The fix for wal_level, and for the walsender; the daemon says why it
	// cannot start while the slots are full, and waits for room.
	for _, sql := range []string{"ALTER SYSTEM SET wal_level = logical", "ALTER SYSTEM SET max_wal_senders = 10"} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pool.Reset()
	if err := cluster.Restart(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	findings, code = p.check()
	p.wantRefusal(findings, code, map[string]string{"replication-slot": ""})
	p.runWaits(messages["replication-slot"])

	// All slots in use, but one is the daemon's: nothing to create.
	if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot('taken'); SELECT pg_create_logical_replication_slot('mvrefresher', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	if findings, code := p.check(); code != 0 || len(findings) > 0 {
		t.Fatalf("check of a healthy setup: exit %d, %+v", code, findings)
	}
}

// openReplicationConnection holds a logical replication connection, a
// walsender, until the test ends.
func openReplicationConnection(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
