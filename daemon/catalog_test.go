package daemon_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
)

func TestDaemon_NeverPublishesATableWithoutReplicaIdentity(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.keyless (account int, amount int);  -- no primary key
		INSERT INTO app.keyless VALUES (1, 10);
		CREATE MATERIALIZED VIEW app.mv_keyless AS SELECT account, sum(amount) AS total FROM app.keyless GROUP BY account;
		CREATE UNIQUE INDEX ON app.mv_keyless (account);
		CREATE TABLE app.keyed (id int PRIMARY KEY, amount int);
		CREATE MATERIALIZED VIEW app.mv_keyed AS SELECT count(*) AS n FROM app.keyed;
		CREATE UNIQUE INDEX ON app.mv_keyed (n);`)
	e.start()
	e.expectEvents(e.settle(), "app.mv_keyed startup ok")
	e.expectMetrics(
		// mv_keyed and the harness's mv_barrier.
		`mvrefresher_views{reason="",state="managed"} 2`,
		`mvrefresher_views{reason="no-replica-identity",state="unmanaged"} 1`,
		// The failure series exist from the start, for the alerts.
		`mvrefresher_refreshes_total{status="failed",view="app.mv_keyed"} 0`,
		`mvrefresher_staleness_target_missed_total{view="app.mv_keyed"} 0`,
		`mvrefresher_last_success_timestamp_seconds{view="app.mv_keyed"} 1.`,
		`mvrefresher_build_info{commit="`,
	)

	var published bool
	if err := e.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND tablename = 'keyless')`, e.cfg.Publication).Scan(&published); err != nil {
		t.Fatal(err)
	}
	if published {
		t.Fatal("app.keyless, which has no replica identity, was added to the publication")
	}
	// The application's writes keep working while the daemon runs.
	e.exec("UPDATE app.keyless SET amount = 11")
	e.exec("DELETE FROM app.keyless")
	e.exec("INSERT INTO app.keyed VALUES (1, 1)")
	e.expectEvents(e.settle(), "app.mv_keyed change ok")

	// With REPLICA IDENTITY FULL the view becomes managed, without a restart.
	e.exec("ALTER TABLE app.keyless REPLICA IDENTITY FULL")
	e.waitFor("mv_keyless to be managed", 30*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM public.mv_refresh_log WHERE mv_name = 'app.mv_keyless'`).Scan(&n)
		return n == 1, err
	})
	e.expectEvents(e.settle(), "app.mv_keyless startup ok")
	e.expectMetrics(
		`mvrefresher_views{reason="",state="managed"} 3`,
		`mvrefresher_views{reason="no-replica-identity",state="unmanaged"} 0`,
		`mvrefresher_refreshes_total{status="failed",view="app.mv_keyless"} 0`,
	)
	e.exec("INSERT INTO app.keyless VALUES (2, 5)")
	e.expectEvents(e.settle(), "app.mv_keyless change ok")
	e.assertFresh("app.mv_keyless")
}

// expectMetrics fails unless /metrics has a line starting with each of want.
func (e *env) expectMetrics(want ...string) {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, w := range want {
		if !strings.Contains(body, "\n"+w) {
			name, _, _ := strings.Cut(w, "{")
			var got []string
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, name+"{") {
					got = append(got, line)
				}
			}
			e.t.Errorf("/metrics has no line starting with %s; it has %q", w, got)
		}
	}
}

func TestDaemon_PlainRefreshWithoutUniqueIndex(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.t (id int PRIMARY KEY, v int);
		CREATE MATERIALIZED VIEW app.mv_plain AS SELECT v, count(*) AS n FROM app.t GROUP BY v;  -- no unique index
		CREATE MATERIALIZED VIEW app.mv_unpopulated AS SELECT id FROM app.t WITH NO DATA;
		CREATE UNIQUE INDEX ON app.mv_unpopulated (id);`)
	e.start()
	evs := e.settle()
	e.expectEvents(evs, "app.mv_plain startup ok", "app.mv_unpopulated startup ok")
	for _, ev := range evs {
		if ev.Concurrently || ev.RowsInserted != nil || ev.RowsDeleted != nil {
			t.Errorf("%s: concurrently %v rows %v/%v, want a plain refresh without row counts", ev.View, ev.Concurrently, ev.RowsInserted, ev.RowsDeleted)
		}
	}
	// Populated now, mv_unpopulated is refreshed concurrently from then on.
	e.exec("INSERT INTO app.t VALUES (1, 1)")
	for _, ev := range e.settle() {
		if want := ev.View == "app.mv_unpopulated"; ev.Concurrently != want {
			t.Errorf("%s refreshed with concurrently=%v, want %v", ev.View, ev.Concurrently, want)
		}
	}
	e.assertFresh("app.mv_plain", "app.mv_unpopulated")
}

func TestDaemon_UpgradesTheSeedsLogTable(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.t (id int PRIMARY KEY);
		CREATE MATERIALIZED VIEW app.mv_t AS SELECT count(*) AS n FROM app.t;
		CREATE UNIQUE INDEX ON app.mv_t (n);
		CREATE TABLE app.mv_refresh_log (mv_name text PRIMARY KEY, refreshed_at timestamptz);
		INSERT INTO app.mv_refresh_log VALUES ('app.mv_t', '2026-01-01');`)
	e.cfg.RefreshLogTable = config.TableName{Schema: "app", Name: "mv_refresh_log"}
	e.start()
	e.expectEvents(e.settle(), "app.mv_t startup ok")
	var count int64
	var status string
	var refreshedAt time.Time
	if err := e.pool.QueryRow(context.Background(), `SELECT refresh_count, status, refreshed_at FROM app.mv_refresh_log WHERE mv_name = 'app.mv_t'`).
		Scan(&count, &status, &refreshedAt); err != nil {
		t.Fatal(err)
	}
	if count != 1 || status != "ok" || refreshedAt.Year() != time.Now().Year() || time.Since(refreshedAt) > time.Hour {
		t.Fatalf("seed log row after a refresh: count %d status %s refreshed_at %v", count, status, refreshedAt)
	}
	// Writing the log must not trigger refreshes even though the log is in
	// a managed schema.
	e.exec("INSERT INTO app.t VALUES (1)")
	e.expectEvents(e.settle(), "app.mv_t change ok")
	e.expectEvents(e.settle())
}

// Replica identity is checked per leaf, where PostgreSQL checks UPDATE and
// DELETE: a leaf set to NOTHING under a keyed root, a USING INDEX whose
// index was dropped, and a DEFERRABLE primary key identify no rows.
func TestDaemon_ReplicaIdentityOfEveryLeaf(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		ALTER TABLE app.events_2025 REPLICA IDENTITY NOTHING;
		CREATE TABLE app.indexed (id int NOT NULL, v int);
		CREATE UNIQUE INDEX indexed_id ON app.indexed (id);
		ALTER TABLE app.indexed REPLICA IDENTITY USING INDEX indexed_id;
		DROP INDEX app.indexed_id;
		INSERT INTO app.indexed VALUES (1, 1);
		CREATE MATERIALIZED VIEW app.mv_indexed AS SELECT count(*) AS n FROM app.indexed;
		CREATE UNIQUE INDEX ON app.mv_indexed (n);
		CREATE TABLE app.deferred (id int PRIMARY KEY DEFERRABLE, v int);  -- identifies no rows
		INSERT INTO app.deferred VALUES (1, 1);
		CREATE MATERIALIZED VIEW app.mv_deferred AS SELECT count(*) AS n FROM app.deferred;
		CREATE UNIQUE INDEX ON app.mv_deferred (n);`)
	e.start()
	// Only the views reading app.accounts alone are managed, and mv_grand,
	// whose base mv_totals is not.
	e.expectEvents(e.settle(), quotedView+" startup ok", "app.mv_grand startup ok")
	e.exec("UPDATE app.events SET amount = amount + 1")
	e.exec("DELETE FROM app.events_2025")
	e.exec("UPDATE app.indexed SET v = 2")
	e.exec("DELETE FROM app.indexed")
	e.exec("UPDATE app.deferred SET v = 2")
	e.exec("DELETE FROM app.deferred")
	e.expectEvents(e.settle())
}

// A partitioned table without a primary key cannot promise that its next
// partition will have one, and a published root publishes new partitions at
// once. So its partitions are published one by one, once checked: creating
// a partition without a key never breaks the application's UPDATEs.
func TestDaemon_KeylessRootPublishesCheckedPartitions(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.m (id int NOT NULL, at date NOT NULL, v int) PARTITION BY RANGE (at);
		CREATE TABLE app.m_2025 PARTITION OF app.m (PRIMARY KEY (id)) FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		INSERT INTO app.m VALUES (1, '2025-05-05', 1);
		CREATE MATERIALIZED VIEW app.mv_m AS SELECT count(*) AS n, sum(v) AS v FROM app.m;
		CREATE UNIQUE INDEX ON app.mv_m (n);`)
	e.start()
	e.expectEvents(e.settle(), "app.mv_m startup ok")
	e.exec("UPDATE app.m SET v = 2")
	e.expectEvents(e.settle(), "app.mv_m change ok")

	// Created without a key and written at once, before any rediscovery.
	e.exec("CREATE TABLE app.m_2026 PARTITION OF app.m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
	e.exec("INSERT INTO app.m VALUES (2, '2026-05-05', 1)")
	e.exec("UPDATE app.m SET v = 3")
	e.exec("DELETE FROM app.m WHERE id = 2")
	// Then the view is no longer managed, and nothing of app.m is published.
	e.waitFor("app.m's partitions to leave the publication", 30*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename LIKE 'm%'`, e.cfg.Publication).Scan(&n)
		return n == 0, err
	})
	e.exec("UPDATE app.m SET v = 4")
}
