package refresher

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
	"github.com/mvrefresher/mvrefresher/internal/wait"
)

// startServer starts a throwaway PostgreSQL for the test (pgtest.Start)
// and connects to it.
func startServer(t *testing.T, opts localpg.Options) *pgxpool.Pool {
	t.Helper()
	c := pgtest.Start(t, opts)
	pool, err := pgxpool.New(context.Background(), c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Marking thousands of views owed (the first start, a publication repair)
// must not take a lock per view: the server's lock table holds
// max_locks_per_transaction per connection, and filling it fails the mark
// (53200) at every try.
func TestMarkOwed_ThousandsOfViewsFitTheLockTable(t *testing.T) {
	ctx := context.Background()
	pool := startServer(t, localpg.Options{Settings: map[string]string{"max_locks_per_transaction": "10"}})
	log := NewLog("public", "mv_refresh_log")
	if err := log.Ensure(ctx, pool); err != nil {
		t.Fatal(err)
	}
	views := make([]string, 50000)
	for i := range views {
		views[i] = fmt.Sprintf("app.mv_%d", i)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO public.mv_refresh_log (mv_name, lsn, refresh_count, status, attempted_at)
		SELECT v, '0/1', 1, 'ok', now() FROM unnest($1::text[]) v`, views); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return log.MarkOwed(ctx, tx, views)
	}); err != nil {
		t.Fatalf("mark %d views owed: %v", len(views), err)
	}
	owed, err := log.Owed(ctx, pool, views)
	if err != nil || len(owed) != len(views) {
		t.Fatalf("owed after the mark: %d of %d (%v)", len(owed), len(views), err)
	}
}

// A view marked owed while its refresh runs stays owed: that refresh's
// snapshot is older than the reason for the mark. The mark does not wait
// for the refresh, and the next refresh settles the debt.
func TestMarkOwed_ARunningRefreshDoesNotSettleALaterDebt(t *testing.T) {
	ctx := context.Background()
	pool := startServer(t, localpg.Options{})
	if _, err := pool.Exec(ctx, `CREATE SCHEMA app;
		CREATE TABLE app.t (id int PRIMARY KEY);
		CREATE MATERIALIZED VIEW app.slow AS SELECT count(*)::int AS n FROM app.t, LATERAL pg_sleep(1) s;
		CREATE UNIQUE INDEX ON app.slow (n);`); err != nil {
		t.Fatal(err)
	}
	view := &catalog.View{Schema: "app", Relname: "slow", Name: "app.slow", Populated: true, UniqueIndex: true}
	if err := pool.QueryRow(ctx, "SELECT 'app.slow'::regclass::oid").Scan(&view.OID); err != nil {
		t.Fatal(err)
	}
	log := NewLog("public", "mv_refresh_log")
	if err := log.Ensure(ctx, pool); err != nil {
		t.Fatal(err)
	}
	r := New(pool, log, 0, 0)
	owed := func() []string {
		t.Helper()
		names, err := log.Owed(ctx, pool, []string{view.Name})
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	refresh := func() {
		t.Helper()
		if out := r.Refresh(ctx, Request{View: view, Mode: ModeAuto, LSN: 1}); out.Err != nil {
			t.Fatal(out.Err)
		}
	}
	refresh()
	if got := owed(); len(got) != 0 {
		t.Fatalf("owed after a refresh: %v", got)
	}

	done := make(chan Outcome, 1)
	go func() { done <- r.Refresh(ctx, Request{View: view, Mode: ModeAuto, LSN: 2}) }()
	if err := wait.Until("the refresh to run", 10*time.Second, func() (bool, error) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'REFRESH MATERIALIZED VIEW%' AND state = 'active'`).Scan(&n)
		return n > 0, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return log.MarkOwed(ctx, tx, []string{view.Name}) }); err != nil {
		t.Fatalf("mark the view owed while it refreshes: %v", err)
	}
	if out := <-done; out.Err != nil {
		t.Fatal(out.Err)
	}
	if got := owed(); len(got) != 1 {
		t.Fatal("the refresh that was running when the view was marked owed settled the debt")
	}
	refresh()
	if got := owed(); len(got) != 0 {
		t.Fatalf("owed after the next refresh: %v", got)
	}
}
