package daemon_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// A view on another view is refreshed within its max wait while writes keep
// arriving during every refresh of its base, so the base is pending again
// whenever it finishes; and the slot keeps moving meanwhile.
func TestDaemon_SustainedWritesDoNotStarveADependent(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.src (id serial PRIMARY KEY, v int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_base AS
			SELECT count(*) AS n, sum(v) AS total FROM app.src, LATERAL pg_sleep(0.3) s;
		CREATE UNIQUE INDEX ON app.mv_base (n);
		CREATE MATERIALIZED VIEW app.mv_dep AS SELECT n, total FROM app.mv_base;
		CREATE UNIQUE INDEX ON app.mv_dep (n);`)
	e.cfg.Debounce, e.cfg.MaxWait = 200*time.Millisecond, 2*time.Second
	e.start()
	e.settle()

	const load = 10 * time.Second
	began := time.Now()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	var midLSN pglogrepl.LSN
	for time.Since(began) < load {
		<-ticker.C
		e.exec("INSERT INTO app.src (v) VALUES (1)")
		if midLSN == 0 && time.Since(began) > 3*time.Second {
			// By now a dependent that never runs holds the slot.
			var err error
			if midLSN, _, err = e.confirmedLSN(); err != nil {
				t.Fatal(err)
			}
		}
	}
	endLSN, _, err := e.confirmedLSN()
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	var base, dep int
	for _, ev := range e.events {
		switch ev.View {
		case "app.mv_base":
			base++
		case "app.mv_dep":
			dep++
		}
	}
	e.mu.Unlock()
	// A coarse check on two busy cores: the dependent refreshes during the
	// writes. When exactly is TestSim_SustainedWritesDoNotStarveADependent's
	// (package schedule), on the scheduler's fake clock: every 2 x max_wait
	// and the two refreshes, 4.4 s here.
	if dep < 1 {
		t.Errorf("during %v of writes the base refreshed %d times and its dependent %d, want at least once", load, base, dep)
	}
	if endLSN <= midLSN {
		t.Errorf("the slot stayed at %s for the last %v of writes", midLSN, load-3*time.Second)
	}
	e.settle()
	e.assertFresh("app.mv_base", "app.mv_dep")
}

// Discovery goes through while refreshes run, however many views it must
// mark owed: here a migration makes a plain view under 70 materialized
// views read a new table while another view's refresh never ends. The new
// table is published and the 70 views refreshed with its rows.
func TestDaemon_DiscoveryIsNotStarvedByRunningRefreshes(t *testing.T) {
	const views = 70
	schema := `
		CREATE TABLE app.hot (id serial PRIMARY KEY);
		CREATE TABLE app.old_src (id int PRIMARY KEY);
		CREATE TABLE app.new_src (id int PRIMARY KEY);
		CREATE VIEW app.v AS SELECT id FROM app.old_src;
		-- Its refresh waits for an advisory lock the test holds.
		CREATE MATERIALIZED VIEW app.mv_stuck AS
			SELECT count(*)::int AS n FROM app.hot, LATERAL (SELECT pg_advisory_xact_lock_shared(42)) l;
		CREATE UNIQUE INDEX ON app.mv_stuck (n);`
	for i := range views {
		schema += fmt.Sprintf(`
		CREATE MATERIALIZED VIEW app.mv_%d AS SELECT count(*)::int AS n FROM app.v;
		CREATE UNIQUE INDEX ON app.mv_%d (n);`, i, i)
	}
	e := newEnv(t, schema)
	e.cfg.LockTimeout = 0
	e.start()
	e.settle()

	release := e.holdSessionLock("SELECT pg_advisory_lock(42)")
	e.exec("INSERT INTO app.hot DEFAULT VALUES")
	e.waitFor("the refresh of mv_stuck to wait", 10*time.Second, e.waiting("REFRESH MATERIALIZED VIEW%"))

	e.exec(`CREATE OR REPLACE VIEW app.v AS SELECT id FROM app.old_src UNION ALL SELECT id FROM app.new_src;
		INSERT INTO app.new_src VALUES (1), (2), (3);`)
	// A few discovery intervals.
	e.waitFor("app.new_src in the publication", 5*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables
			WHERE pubname = $1 AND schemaname = 'app' AND tablename = 'new_src'`, e.cfg.Publication).Scan(&n)
		return n == 1, err
	})
	lsn := e.walLSN()
	for i := range views {
		view := fmt.Sprintf("app.mv_%d", i)
		if st, err := e.waitFresh(view, lsn, 20*time.Second); err != nil {
			t.Fatalf("%s: %+v, %v", view, st, err)
		}
	}
	e.assertFresh("app.mv_0", fmt.Sprintf("app.mv_%d", views-1))
	release()
	e.settle()
	e.assertFresh("app.mv_stuck")
}
