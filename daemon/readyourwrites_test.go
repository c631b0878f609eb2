package daemon_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// walLSN is what an application reads after its commit.
func (e *env) walLSN() pglogrepl.LSN {
	e.t.Helper()
	var lsn pglogrepl.LSN
	if err := e.pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

func (e *env) waitFresh(view string, lsn pglogrepl.LSN, timeout time.Duration) (events.ViewState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.daemon.WaitFresh(ctx, view, lsn)
}

func (e *env) queryInt(sql string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

const readYourWritesSchema = `
	CREATE TABLE app.orders (id int PRIMARY KEY, amount int NOT NULL);
	CREATE TABLE app.audit (id serial PRIMARY KEY, note text);
	CREATE TABLE app.unread (id serial PRIMARY KEY);
	CREATE MATERIALIZED VIEW app.mv_totals AS
		SELECT count(*)::int AS n, coalesce(sum(amount), 0)::int AS total FROM app.orders;
	CREATE UNIQUE INDEX ON app.mv_totals (n);
	-- A slow cascade: a dependent answered when its base is done would
	-- show the old total.
	CREATE MATERIALIZED VIEW app.mv_totals_copy AS
		SELECT n, total FROM app.mv_totals, LATERAL pg_sleep(0.5) s;
	CREATE UNIQUE INDEX ON app.mv_totals_copy (n);
	CREATE MATERIALIZED VIEW app.mv_audit AS SELECT count(*)::int AS n FROM app.audit;
	CREATE UNIQUE INDEX ON app.mv_audit (n);`

// A commit, then a wait for pg_current_wal_insert_lsn(): the view and the view built
// on it hold the row when the wait returns, and the refresh events carry the
// position.
func TestDaemon_ReadYourWrites(t *testing.T) {
	e := newEnv(t, readYourWritesSchema)
	e.cfg.Debounce = 300 * time.Millisecond
	e.start()
	e.settle()
	for i := 1; i <= 3; i++ {
		e.exec("INSERT INTO app.orders VALUES ($1, 10)", i)
		lsn := e.walLSN()
		view := "app.mv_totals"
		if i%2 == 0 {
			view = "app.mv_totals_copy" // its base pending, then refreshing, then its own refresh
		}
		st, err := e.waitFresh(view, lsn, 20*time.Second)
		if err != nil {
			t.Fatalf("wait for %s through %s: %v", view, lsn, err)
		}
		if n := e.queryInt("SELECT total FROM " + view); n != 10*i {
			t.Fatalf("after the wait, %s has total %d, want %d (state %+v)", view, n, 10*i, st)
		}
		if through, err := pglogrepl.ParseLSN(st.FreshThrough); err != nil || through < lsn {
			t.Fatalf("answered with fresh_through %q for %s", st.FreshThrough, lsn)
		}
	}
	ev := e.waitEvent("the copy's refresh event", func(ev events.Refresh) bool { return ev.View == "app.mv_totals_copy" })
	if _, err := pglogrepl.ParseLSN(ev.FreshThrough); err != nil {
		t.Errorf("refresh event without a fresh_through: %+v", ev)
	}
}

// A write the view does not read makes it fresh through the write at once,
// without a refresh, even while another view waits for its refresh.
func TestDaemon_WaitWithoutARefresh(t *testing.T) {
	e := newEnv(t, readYourWritesSchema)
	e.cfg.Debounce, e.cfg.MaxWait = 300*time.Millisecond, 2*time.Second
	slow, slowMax := 30*time.Second, time.Minute
	e.cfg.Views = map[string]config.View{"app.mv_audit": {Debounce: &slow, MaxWait: &slowMax}}
	e.start()
	e.settle()
	e.exec("INSERT INTO app.audit (note) VALUES ('pending for 30 s')")
	for _, write := range []string{
		"INSERT INTO app.audit (note) VALUES ('published, read by another view')",
		"INSERT INTO app.unread DEFAULT VALUES", // not published
		"INSERT INTO app.unread DEFAULT VALUES",
		"INSERT INTO app.unread DEFAULT VALUES",
	} {
		// The test cluster commits asynchronously: the WAL writer would send
		// the commit to the stream up to 600 ms later.
		e.exec("BEGIN; SET LOCAL synchronous_commit = on; " + write + "; COMMIT")
		lsn := e.walLSN()
		// The views' debounce is 300 ms: an answer within it needed no refresh.
		st, err := e.waitFresh("app.mv_totals", lsn, 250*time.Millisecond)
		if err != nil {
			now, _ := e.daemon.View(context.Background(), "app.mv_totals")
			t.Fatalf("after %q: wait for app.mv_totals through %s: %v (now %+v)", write, lsn, err, now)
		}
		if st.Pending || st.Refreshing || st.LastRefresh == nil || st.LastRefresh.Reason != events.ReasonStartup {
			t.Errorf("after %q: %+v, want nothing pending and no refresh since the startup one", write, st)
		}
	}
	st, err := e.waitFresh("app.mv_audit", e.walLSN(), 500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the view waiting out its 30 s debounce: %+v, %v; want a timeout", st, err)
	}
}

// A refresh that fails lets the slot pass its change (a failure is
// recorded), but the view is not fresh through it, before a restart or
// after; nor, through its base, is the view built on it.
func TestDaemon_RestartNeverVouchesForAnUnrefreshedChange(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.orders (id int PRIMARY KEY, amount int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_totals AS
			SELECT count(*)::int AS n, (100 / (coalesce(min(amount), 1) + 100))::int AS ratio FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_totals (n);
		CREATE MATERIALIZED VIEW app.mv_copy AS SELECT n, ratio FROM app.mv_totals;
		CREATE UNIQUE INDEX ON app.mv_copy (n);`)
	e.cfg.Debounce = 100 * time.Millisecond
	e.start()
	e.settle()
	e.exec("INSERT INTO app.orders VALUES (1, -100)") // the refresh divides by zero
	bad := e.walLSN()
	e.waitEvent("the failed refresh", func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Status == events.StatusFailed
	})
	e.settle() // the slot passes the failed change
	notFresh := func(when string) {
		t.Helper()
		for _, view := range []string{"app.mv_totals", "app.mv_copy"} {
			if st, err := e.waitFresh(view, bad, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: %s reported fresh through the failed change at %s: %+v, %v", when, view, bad, st, err)
			}
		}
	}
	notFresh("before a restart")
	e.stop()
	e.start()
	e.waitFor("the daemon to answer", 30*time.Second, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.daemon.View(ctx, "app.mv_totals")
		return err == nil, nil
	})
	notFresh("after a restart")
	e.exec("DELETE FROM app.orders")
	st, err := e.waitFresh("app.mv_copy", e.walLSN(), 20*time.Second)
	if err != nil {
		t.Fatalf("once the failure is fixed: %+v, %v", st, err)
	}
	if n := e.queryInt("SELECT n FROM app.mv_copy"); n != 0 {
		t.Fatalf("app.mv_copy has n = %d, want 0", n)
	}
}

// Detaching or attaching a filled partition changes a view without a row
// change in the WAL: a wait for a position after it is answered only once
// a discovery has seen it and the view is refreshed. The wait asks for
// that discovery instead of waiting for discovery_interval.
func TestDaemon_WaitCoversPartitionChanges(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		CREATE TABLE app.events_2027 (LIKE app.events INCLUDING ALL);
		INSERT INTO app.events_2027 VALUES (70, '2027-03-01', 1, 1000);`)
	e.cfg.DiscoveryInterval = time.Hour
	e.start()
	e.settle()

	for _, ddl := range []string{
		"ALTER TABLE app.events DETACH PARTITION app.events_2025",
		"ALTER TABLE app.events ATTACH PARTITION app.events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
	} {
		e.exec(ddl)
		for _, view := range []string{"app.mv_totals", "app.mv_grand"} {
			if st, err := e.waitFresh(view, e.walLSN(), 20*time.Second); err != nil {
				t.Fatalf("after %s: %s: %+v, %v", ddl, view, st, err)
			}
			e.assertFresh(view)
		}
	}
}
