package daemon_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/events"
)

// schemaSQL is a small version of the seed: a partitioned fact table, a
// plain view in between, a view over a view, a view whose name needs
// quoting, and a table no view reads.
const schemaSQL = `
CREATE TABLE app.events (id bigint, at date NOT NULL, account int NOT NULL, amount int NOT NULL,
    PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE app.accounts (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.unrelated (id int PRIMARY KEY, note text);

CREATE VIEW app.v_big AS SELECT * FROM app.events WHERE amount >= 100;

CREATE MATERIALIZED VIEW app.mv_totals AS
    SELECT account, count(*) AS n, sum(amount) AS total FROM app.events GROUP BY account;
CREATE UNIQUE INDEX ON app.mv_totals (account);

CREATE MATERIALIZED VIEW app.mv_big AS
    SELECT a.name, count(*) AS n FROM app.v_big b JOIN app.accounts a ON a.id = b.account GROUP BY a.name;
CREATE UNIQUE INDEX ON app.mv_big (name);

CREATE MATERIALIZED VIEW app.mv_grand AS SELECT sum(n) AS n, sum(total) AS total FROM app.mv_totals;
CREATE UNIQUE INDEX ON app.mv_grand (n);

CREATE MATERIALIZED VIEW app."Mixed Case ""quoted"" view" AS SELECT id, name FROM app.accounts;
CREATE UNIQUE INDEX ON app."Mixed Case ""quoted"" view" (id);

INSERT INTO app.accounts VALUES (1, 'ada'), (2, 'bob');
INSERT INTO app.events VALUES (1, '2025-06-01', 1, 50), (2, '2026-02-01', 2, 150);
REFRESH MATERIALIZED VIEW app.mv_totals;
REFRESH MATERIALIZED VIEW app.mv_big;
REFRESH MATERIALIZED VIEW app.mv_grand;
REFRESH MATERIALIZED VIEW app."Mixed Case ""quoted"" view";
`

const quotedView = `app."Mixed Case ""quoted"" view"`

var allViews = []string{"app.mv_totals", "app.mv_big", "app.mv_grand", quotedView}

func TestDaemon_EndToEnd(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()

	// First start: every view once, bases before dependents.
	evs := e.settle()
	e.expectEvents(evs, "app.mv_totals startup ok", "app.mv_big startup ok", "app.mv_grand startup ok", quotedView+" startup ok")
	assertOrder(t, evs, "app.mv_totals", "app.mv_grand")

	t.Run("insert into a partition refreshes the views reading the fact table, then the view over the view", func(t *testing.T) {
		e.t = t
		e.exec("INSERT INTO app.events VALUES (3, '2026-03-01', 1, 500)")
		evs := e.settle()
		e.expectEvents(evs, "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
		assertOrder(t, evs, "app.mv_totals", "app.mv_grand")
		e.assertFresh(allViews...)
		for _, ev := range evs {
			if ev.View == "app.mv_totals" {
				if !ev.Concurrently || ev.RowsInserted == nil || *ev.RowsInserted != 1 || *ev.RowsDeleted != 1 {
					t.Errorf("mv_totals event: concurrently %v rows %v/%v, want a concurrent refresh rewriting 1 row", ev.Concurrently, ev.RowsInserted, ev.RowsDeleted)
				}
				if ev.Changes != 1 || len(ev.Sources) != 1 || ev.Sources[0] != "app.events" {
					t.Errorf("mv_totals event: changes %d sources %v, want 1 change from app.events", ev.Changes, ev.Sources)
				}
				if ev.FirstChangeAt.IsZero() || ev.StalenessMS <= 0 {
					t.Errorf("mv_totals event: first_change_at %v staleness %v", ev.FirstChangeAt, ev.StalenessMS)
				}
			}
		}
	})

	t.Run("a table no view reads refreshes nothing", func(t *testing.T) {
		e.t = t
		e.exec("INSERT INTO app.unrelated VALUES (1, 'x')")
		e.exec("UPDATE app.unrelated SET note = 'y'")
		e.expectEvents(e.settle())
	})

	t.Run("quoted names survive end to end", func(t *testing.T) {
		e.t = t
		e.exec("UPDATE app.accounts SET name = 'bobby' WHERE id = 2")
		e.expectEvents(e.settle(), "app.mv_big change ok", quotedView+" change ok")
		e.assertFresh(allViews...)
	})

	t.Run("truncate of one partition", func(t *testing.T) {
		e.t = t
		e.exec("TRUNCATE app.events_2025")
		e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
		e.assertFresh(allViews...)
	})

	t.Run("a partition created while running", func(t *testing.T) {
		e.t = t
		e.exec("CREATE TABLE app.events_2027 PARTITION OF app.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
		e.exec("INSERT INTO app.events VALUES (4, '2027-05-01', 2, 7)")
		// If rediscovery sees the new partition only after the row arrived, it
		// cannot tell an insert from a filled ATTACH and refreshes once more.
		counts := map[string]int{}
		for _, ev := range e.settle() {
			counts[ev.View+" "+string(ev.Reason)]++
		}
		for _, want := range []string{"app.mv_totals change", "app.mv_big change", "app.mv_grand cascade"} {
			if counts[want] < 1 || counts[want] > 2 {
				t.Errorf("%s: %d refreshes, want 1 (2 at most)", want, counts[want])
			}
			delete(counts, want)
		}
		if len(counts) > 0 {
			t.Errorf("unexpected refreshes: %v", counts)
		}
		e.assertFresh(allViews...)
	})

	t.Run("a burst of 60 transactions is one refresh per view", func(t *testing.T) {
		e.t = t
		for i := range 60 {
			e.exec("INSERT INTO app.events VALUES ($1, '2026-04-01', 1, 1)", 100+i)
		}
		evs := e.settle()
		counts := map[string]int{}
		for _, ev := range evs {
			counts[ev.View]++
		}
		for _, v := range []string{"app.mv_totals", "app.mv_big", "app.mv_grand"} {
			// One, plus at most one more if changes arrived while it ran.
			if counts[v] < 1 || counts[v] > 2 {
				t.Errorf("%s refreshed %d times for a burst of 60 transactions, want 1 (at most 2)", v, counts[v])
			}
		}
		if counts[quotedView] != 0 {
			t.Errorf("%s refreshed %d times, but it does not read app.events", quotedView, counts[quotedView])
		}
		total := 0
		for _, ev := range evs {
			if ev.View == "app.mv_totals" {
				total += ev.Changes
			}
		}
		if total != 60 {
			t.Errorf("mv_totals events count %d changes, want 60", total)
		}
		e.assertFresh(allViews...)
	})

	t.Run("the refresh log records each refresh", func(t *testing.T) {
		e.t = t
		r := e.logRow("app.mv_totals")
		if r.status != "ok" || r.err != nil || r.lsn == nil || r.concurrently == nil || !*r.concurrently {
			t.Errorf("log row: %+v", r)
		}
		if r.refreshCount < 5 {
			t.Errorf("log row refresh_count %d, want at least 5 (startup + 4 changes)", r.refreshCount)
		}
	})
}

// assertOrder checks that base finished before dependent started.
func assertOrder(t *testing.T, evs []events.Refresh, base, dependent string) {
	t.Helper()
	var baseDone, depStart time.Time
	for _, ev := range evs {
		switch ev.View {
		case base:
			baseDone = ev.FinishedAt
		case dependent:
			depStart = ev.StartedAt
		}
	}
	if baseDone.IsZero() || depStart.IsZero() || depStart.Before(baseDone) {
		t.Errorf("%s started at %v, before its base %s finished at %v", dependent, depStart, base, baseDone)
	}
}

func TestDaemon_RestartResumesFromTheSlot(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	e.stop()

	// Restart with nothing changed: nothing is refreshed.
	e.start()
	e.expectEvents(e.settle())
	e.stop()

	// Changes made while the daemon is down are replayed from the slot.
	e.exec("INSERT INTO app.events VALUES (10, '2026-01-05', 2, 300)")
	e.exec("INSERT INTO app.unrelated VALUES (10, 'down')")
	e.start()
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

func TestDaemon_PicksUpNewViewsAndSources(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	e.exec(`CREATE TABLE app.orders (id int PRIMARY KEY, total int NOT NULL);
		INSERT INTO app.orders VALUES (1, 10);
		CREATE MATERIALIZED VIEW app.mv_orders AS SELECT count(*) AS n, sum(total) AS total FROM app.orders;
		CREATE UNIQUE INDEX ON app.mv_orders (n);`)
	// The new view is refreshed once it is managed, since changes to its
	// new source were not streamed before the publication had it.
	e.waitFor("app.orders in the publication", 30*time.Second, func() (bool, error) {
		var ok bool
		err := e.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
			WHERE pubname = $1 AND schemaname = 'app' AND tablename = 'orders')`, e.cfg.Publication).Scan(&ok)
		return ok, err
	})
	e.expectEvents(e.settle(), "app.mv_orders startup ok")

	e.exec("INSERT INTO app.orders VALUES (2, 20)")
	e.expectEvents(e.settle(), "app.mv_orders change ok")
	e.assertFresh("app.mv_orders")

	e.exec("DROP MATERIALIZED VIEW app.mv_orders")
	e.waitFor("app.orders to leave the publication", 30*time.Second, func() (bool, error) {
		var ok bool
		err := e.pool.QueryRow(context.Background(), `SELECT NOT EXISTS (SELECT 1 FROM pg_publication_tables
			WHERE pubname = $1 AND tablename = 'orders')`, e.cfg.Publication).Scan(&ok)
		return ok, err
	})
	e.exec("INSERT INTO app.orders VALUES (3, 30)")
	e.expectEvents(e.settle())
}

func TestDaemon_ManualRequestThroughTheWAL(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	// A request naming a view refreshes that view only, without debounce.
	e.exec("SELECT pg_logical_emit_message(true, 'mvrefresher', 'app.mv_totals')")
	e.expectEvents(e.settle(), "app.mv_totals manual ok", "app.mv_grand cascade ok")

	// Naming a source table acts as a change to it.
	e.exec("SELECT pg_logical_emit_message(true, 'mvrefresher', 'app.accounts')")
	e.expectEvents(e.settle(), "app.mv_big change ok", quotedView+" change ok")

	// A rolled-back request does nothing.
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'mvrefresher', 'app.mv_totals')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectEvents(e.settle())
}

// TestDaemon_PartitionDDL: DETACH, ATTACH and DROP of a partition change what
// a view reads without a row change in the WAL.
func TestDaemon_PartitionDDL(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	refreshedAfterDDL := func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Reason == events.ReasonChange && len(ev.Sources) == 1 && ev.Sources[0] == "app.events"
	}
	for _, ddl := range []string{
		"ALTER TABLE app.events DETACH PARTITION app.events_2025",
		"ALTER TABLE app.events ATTACH PARTITION app.events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
		"DROP TABLE app.events_2025",
	} {
		t.Run(ddl, func(t *testing.T) {
			e.t = t
			e.exec(ddl)
			e.waitEvent("mv_totals refreshed after "+ddl, refreshedAfterDDL)
			e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
			e.assertFresh(allViews...)
		})
	}
}

// TestDaemon_ChurnOfTheSeedsNowColumn: the NOW() view rewrites every row on
// every refresh, a pure aggregation only what changed; the daemon says so.
func TestDaemon_ChurnOfTheSeedsNowColumn(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.ev (id int PRIMARY KEY, account int NOT NULL);
		INSERT INTO app.ev SELECT i, i % 20 FROM generate_series(1, 200) i;
		CREATE MATERIALIZED VIEW app.mv_now AS SELECT account, count(*) AS n, now() AS last_refreshed_at FROM app.ev GROUP BY account;
		CREATE UNIQUE INDEX ON app.mv_now (account);
		CREATE MATERIALIZED VIEW app.mv_pure AS SELECT account, count(*) AS n FROM app.ev GROUP BY account;
		CREATE UNIQUE INDEX ON app.mv_pure (account);`)
	e.start()
	e.settle()
	for i := range 3 {
		e.exec("INSERT INTO app.ev VALUES ($1, 1)", 1000+i)
		for _, ev := range e.settle() {
			want := int64(1)
			if ev.View == "app.mv_now" {
				want = 20
			}
			if ev.RowsInserted == nil || *ev.RowsInserted != want || *ev.RowsDeleted != want {
				t.Errorf("%s rewrote %v/%v rows for a one-row change, want %d", ev.View, ev.RowsInserted, ev.RowsDeleted, want)
			}
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "rewrites (nearly) every row") || !strings.Contains(logs, "view=app.mv_now") || !strings.Contains(logs, "last_refreshed_at") {
		t.Errorf("no churn warning naming mv_now and its NOW() column:\n%s", logs)
	}
	if strings.Count(logs, "rewrites (nearly) every row") != 1 {
		t.Errorf("the churn warning should be logged once")
	}
	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `mvrefresher_view_churn_ratio{view="app.mv_now"} 1`) || !strings.Contains(body, `mvrefresher_view_churn_ratio{view="app.mv_pure"} 0.05`) {
		t.Errorf("churn ratios in metrics:\n%s", body)
	}
}
