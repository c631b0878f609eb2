package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
)

// The /views endpoints and `mvrefresher wait` against a running daemon:
// the answers and status codes a client relies on, and wait's exit codes.
func TestViewsEndpointsAndWait(t *testing.T) {
	cluster, pool := startCluster(t, `
		CREATE SCHEMA app;
		CREATE TABLE app.orders (id int PRIMARY KEY, amount int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_totals AS
			SELECT count(*)::int AS n, (100 / (coalesce(min(amount), 1) + 100))::int AS ratio FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_totals (n);`)
	flags := []string{"--database-url", cluster.URL("postgres"), "--schemas", "app", "--debounce", "100ms", "--nats-url", ""}
	base := startDaemon(t, flags, 1)

	for _, c := range []struct {
		path string
		want int
	}{
		{"/views/app.mv_totals", http.StatusOK},
		{`/views/"app"."mv_totals"`, http.StatusOK},
		{"/views/app.nosuch", http.StatusNotFound},
		{"/views/app.nosuch/wait?lsn=0/0", http.StatusNotFound},
		{"/views/app.mv_totals/wait", http.StatusBadRequest},
		{"/views/app.mv_totals/wait?lsn=12345", http.StatusBadRequest},
		{"/views/app.mv_totals/wait?lsn=0/0&timeout=soon", http.StatusBadRequest},
		{"/views/app.mv_totals/wait?lsn=0/0&timeout=1h", http.StatusBadRequest},
		{"/views/app.mv_totals/wait?lsn=0/0", http.StatusOK},
	} {
		var body map[string]any
		code, err := getJSON(base+c.path, &body)
		if err != nil || code != c.want {
			t.Errorf("GET %s: %d %v, want %d (%v)", c.path, code, err, c.want, body)
		}
		if c.want >= 400 && body["error"] == nil {
			t.Errorf("GET %s: no error message: %v", c.path, body)
		}
	}

	waitCmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"wait", "--url", base, "--database-url", cluster.URL("postgres")}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	// A write, then a wait for the position read after it.
	if _, err := pool.Exec(context.Background(), "INSERT INTO app.orders VALUES (1, 10)"); err != nil {
		t.Fatal(err)
	}
	var lsn pglogrepl.LSN
	if err := pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	if out, err := waitCmd("--view", "app.mv_totals", "--lsn", lsn.String(), "--timeout", "20s"); err != nil {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT n FROM app.mv_totals").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the wait, app.mv_totals has n = %d (%v), want 1", n, err)
	}
	// Without --lsn it reads the position itself.
	if out, err := waitCmd("--view", "app.mv_totals", "--timeout", "20s"); err != nil || !strings.Contains(out, "fresh through") {
		t.Fatalf("wait without --lsn: %v\n%s", err, out)
	}

	// A refresh that fails: the view is not fresh through the change.
	if _, err := pool.Exec(context.Background(), "INSERT INTO app.orders VALUES (2, -100)"); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	out, err := waitCmd("--view", "app.mv_totals", "--lsn", lsn.String(), "--timeout", "1s")
	if code := exitCode(err); code != 1 || !strings.Contains(out, "not fresh through "+lsn.String()) {
		t.Errorf("wait for a failing view: exit %d (%v), want 1\n%s", code, err, out)
	}
	var st events.ViewState
	path := fmt.Sprintf("/views/app.mv_totals/wait?lsn=%s&timeout=500ms", lsn)
	if code, err := getJSON(base+path, &st); err != nil || code != http.StatusGatewayTimeout || !st.Pending || st.LastRefresh == nil || st.LastRefresh.Status != events.StatusFailed {
		t.Errorf("GET %s: %d %v %+v, want 504 with the pending view and its failed refresh", path, code, err, st)
	}
	if out, err := waitCmd("--view", "app.nosuch", "--lsn", "0/0"); exitCode(err) != 2 || strings.Count(out, "not a managed view") != 1 {
		t.Errorf("wait for an unknown view: exit %d (%v), want 2, saying \"not a managed view\" once\n%s", exitCode(err), err, out)
	}
	if out, err := waitCmd("--lsn", "0/0"); exitCode(err) != 2 || !strings.Contains(out, "--view") {
		t.Errorf("wait without --view: exit %d (%v), want 2\n%s", exitCode(err), err, out)
	}
}

func getJSON(url string, out any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return resp.StatusCode, errors.New("Content-Type " + ct)
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}
