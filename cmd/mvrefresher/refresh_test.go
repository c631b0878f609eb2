package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/events"
)

// `mvrefresher refresh` against a running daemon: the refresh it asks for
// is done (reason manual) when --wait returns 0; without --wait it only
// asks; a refresh that fails is a timeout (1); misuse is 2.
func TestRefresh(t *testing.T) {
	cluster, pool := startCluster(t, `
		CREATE SCHEMA app;
		CREATE TABLE app.orders (id int PRIMARY KEY, amount int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_totals AS
			SELECT count(*)::int AS n, (100 / (coalesce(min(amount), 1) + 100))::int AS ratio FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_totals (n);
		CREATE MATERIALIZED VIEW app.mv_count AS SELECT count(*)::int AS n FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_count (n);`)
	flags := []string{"--database-url", cluster.URL("postgres"), "--schemas", "app", "--debounce", "100ms", "--nats-url", ""}
	base := startDaemon(t, flags, 2)
	refresh := func(args ...string) (string, int) {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"refresh", "--url", base, "--database-url", cluster.URL("postgres")}, args...), &out, &out); err != nil {
			return out.String(), exitCode(err)
		}
		return out.String(), 0
	}
	lastReason := func(view string) events.Reason {
		var st events.ViewState
		if code, err := getJSON(base+"/views/"+view, &st); err != nil || code != http.StatusOK || st.LastRefresh == nil {
			t.Fatalf("GET /views/%s: %d %v %+v", view, code, err, st)
		}
		return st.LastRefresh.Reason
	}

	// Flags may follow the names.
	out, code := refresh("app.mv_totals", "app.mv_count", "--wait", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "app.mv_totals is refreshed") || !strings.Contains(out, "app.mv_count is refreshed") {
		t.Fatalf("refresh --wait: exit %d, want 0\n%s", code, out)
	}
	for _, v := range []string{"app.mv_totals", "app.mv_count"} {
		if r := lastReason(v); r != events.ReasonManual {
			t.Errorf("%s: last refresh's reason %q, want manual", v, r)
		}
	}
	if out, code := refresh("app.mv_count"); code != 0 || !strings.Contains(out, "asked for a refresh of 1 view(s)") {
		t.Errorf("refresh without --wait: exit %d, want 0\n%s", code, out)
	}

	// A refresh that fails: the view is not refreshed in time.
	if _, err := pool.Exec(context.Background(), "INSERT INTO app.orders VALUES (1, -100)"); err != nil {
		t.Fatal(err)
	}
	if out, code := refresh("--wait", "--timeout", "2s", "app.mv_totals"); code != 1 || !strings.Contains(out, "app.mv_totals is not refreshed through") {
		t.Errorf("refresh --wait of a failing view: exit %d, want 1\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"app.nosuch"}, "app.nosuch: no such materialized view"},
		{[]string{"app.orders"}, "app.orders: no such materialized view"},
		{[]string{"--wait"}, "name at least one materialized view"},
		{[]string{"not a name!"}, `"not a name!"`},
	} {
		if out, code := refresh(c.args...); code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("refresh %q: exit %d, want 2 saying %q\n%s", c.args, code, c.want, out)
		}
	}
}
