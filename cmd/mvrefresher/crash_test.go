package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/refresher"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds mvrefresher once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mvr-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mvrefresher")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

type crashEnv struct {
	t    *testing.T
	url  string
	pool *pgxpool.Pool
}

func (c *crashEnv) exec(sql string) {
	c.t.Helper()
	if _, err := c.pool.Exec(context.Background(), sql); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
}

func (c *crashEnv) waitFor(what string, cond func() (bool, error)) {
	c.t.Helper()
	if err := wait.Until(what, 60*time.Second, cond); err != nil {
		c.t.Fatal(err)
	}
}

func (c *crashEnv) lsn(sql string) pglogrepl.LSN {
	c.t.Helper()
	var l *pglogrepl.LSN
	if err := c.pool.QueryRow(context.Background(), sql).Scan(&l); err != nil {
		c.t.Fatal(err)
	}
	if l == nil {
		return 0
	}
	return *l
}

func (c *crashEnv) refreshCount() int64 {
	var n int64
	err := c.pool.QueryRow(context.Background(), `SELECT coalesce((SELECT refresh_count FROM public.mv_refresh_log WHERE mv_name = 'public.mv_sum'), 0)`).Scan(&n)
	if refresher.SQLState(err) == pgerrcode.UndefinedTable {
		return 0 // the daemon has not created the log yet
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func (c *crashEnv) fresh() bool {
	var ok bool
	if err := c.pool.QueryRow(context.Background(), `SELECT (SELECT total FROM mv_sum) IS NOT DISTINCT FROM (SELECT sum(v) FROM t)`).Scan(&ok); err != nil {
		c.t.Fatal(err)
	}
	return ok
}

// start runs the binary with extra environment until the test ends or the
// returned process is killed.
func (c *crashEnv) start(env ...string) *exec.Cmd {
	c.t.Helper()
	return c.startWith(nil, env...)
}

// startWith is start with extra arguments to run.
func (c *crashEnv) startWith(args []string, env ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(binary(c.t), append([]string{"run", "--listen", ""}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"MVREFRESHER_DATABASE_URL=" + c.url, "MVREFRESHER_SLOT=crash"}, env...)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if c.t.Failed() {
			c.t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return cmd
}

func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// TestMain_KillMinus9LosesNoRefresh kills the daemon with SIGKILL after a
// change reached it but before its refresh, and in the middle of a refresh:
// after a restart the view is refreshed either way.
func TestMain_KillMinus9LosesNoRefresh(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 1);
		CREATE MATERIALIZED VIEW mv_sum AS SELECT sum(v) AS total FROM t; CREATE UNIQUE INDEX ON mv_sum (total);`)
	c := &crashEnv{t: t, url: cluster.URL("postgres"), pool: pool}

	// Before the refresh: a debounce of an hour keeps the change pending.
	d := c.start("MVREFRESHER_DEBOUNCE=1h", "MVREFRESHER_MAX_WAIT=0")
	c.waitFor("the startup refresh", func() (bool, error) { return c.refreshCount() == 1, nil })
	c.exec("INSERT INTO t VALUES (2, 10)")
	after := c.lsn("SELECT pg_current_wal_insert_lsn()")
	c.waitFor("the change to reach the daemon", func() (bool, error) {
		return c.lsn("SELECT sent_lsn FROM pg_stat_replication WHERE application_name = 'mvrefresher'") >= after, nil
	})
	kill9(t, d)
	if c.fresh() {
		t.Fatal("the view is already fresh: the debounce did not hold the refresh back, the test proves nothing")
	}
	if confirmed := c.lsn("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'crash'"); confirmed >= after {
		t.Fatalf("the slot confirmed %s past the unrefreshed change (%s)", confirmed, after)
	}
	d = c.start("MVREFRESHER_DEBOUNCE=0s")
	c.waitFor("the change refreshed after the restart", func() (bool, error) { return c.fresh(), nil })

	// In the middle of a refresh: an open transaction holds the lock the
	// daemon's refresh needs.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY mv_sum"); err != nil {
		t.Fatal(err)
	}
	c.exec("INSERT INTO t VALUES (3, 100)")
	c.waitFor("the daemon's refresh to wait for the lock", func() (bool, error) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mvrefresher'
			AND query LIKE 'REFRESH MATERIALIZED VIEW%' AND wait_event_type = 'Lock'`).Scan(&n)
		return n > 0, err
	})
	kill9(t, d)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if c.fresh() {
		t.Fatal("the view is fresh although its refresh was killed")
	}
	c.start("MVREFRESHER_DEBOUNCE=0s")
	c.waitFor("the change refreshed after the second restart", func() (bool, error) { return c.fresh(), nil })
}

// TestMain_KillMinus9ReplayOfAMaintenanceWritesNothing kills the daemon
// after a maintenance committed but before the slot passed its change
// (another view's pending refresh holds it): after the restart the change
// comes again, its groups are recomputed to the same values, and nothing
// is written.
func TestMain_KillMinus9ReplayOfAMaintenanceWritesNothing(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE TABLE t (id int PRIMARY KEY, day date NOT NULL, v int NOT NULL);
		INSERT INTO t SELECT g, date '2026-01-01' + g % 30, g FROM generate_series(1, 300) g;
		CREATE INDEX ON t (day);
		CREATE MATERIALIZED VIEW mv_daily AS SELECT day, count(*) AS n, sum(v) AS total FROM t GROUP BY day;
		CREATE UNIQUE INDEX ON mv_daily (day);
		CREATE MATERIALIZED VIEW mv_sum AS SELECT sum(v) AS total FROM t; CREATE UNIQUE INDEX ON mv_sum (total);`)
	c := &crashEnv{t: t, url: cluster.URL("postgres"), pool: pool}
	configFile := func(slow string) string {
		path := filepath.Join(t.TempDir(), "mvrefresher.yaml")
		yaml := "views:\n  public.mv_daily: {incremental: true}\n  public.mv_sum: {" + slow + "}\n"
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	type logRow struct {
		count                      int64
		mode                       *string
		inserted, updated, deleted *int64
		lsn                        *pglogrepl.LSN
	}
	// An updated row counts in rows_inserted and rows_deleted too.
	written := func(r logRow) int64 { return deref(r.inserted) + deref(r.deleted) - deref(r.updated) }
	daily := func() (r logRow) {
		err := pool.QueryRow(ctx, `SELECT refresh_count, maintenance, rows_inserted, rows_updated, rows_deleted, lsn
			FROM public.mv_refresh_log WHERE mv_name = 'public.mv_daily'`).Scan(&r.count, &r.mode, &r.inserted, &r.updated, &r.deleted, &r.lsn)
		if err != nil && refresher.SQLState(err) != pgerrcode.UndefinedTable && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return r
	}

	// mv_sum's hour-long debounce keeps its refresh, and the slot, before
	// the change.
	d := c.startWith([]string{"--config", configFile("debounce: 1h, max_wait: 0s")})
	c.waitFor("the startup maintenance of mv_daily", func() (bool, error) { return daily().count >= 1, nil })
	startup := daily().count
	c.exec("INSERT INTO t VALUES (1000, '2026-01-05', 7)")
	// At or past the insert's commit (other WAL may follow it).
	after := c.lsn("SELECT pg_current_wal_insert_lsn()")
	c.waitFor("the maintenance of the insert", func() (bool, error) { return daily().count > startup, nil })
	if r := daily(); deref(r.mode) != "incremental" || written(r) != 1 {
		t.Fatalf("the insert's maintenance: mode %q, %d rows written; want incremental, one row written", deref(r.mode), written(r))
	}
	if confirmed := c.lsn("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'crash'"); confirmed >= after {
		t.Fatalf("the slot confirmed %s past the change (%s) mv_sum has not refreshed", confirmed, after)
	}
	before := daily().count
	kill9(t, d)

	c.startWith([]string{"--config", configFile("debounce: 0s")})
	c.waitFor("the maintenance of the replayed insert", func() (bool, error) { return daily().count > before, nil })
	r := daily()
	if deref(r.mode) != "incremental" || written(r) != 0 {
		t.Fatalf("the replayed insert's maintenance: mode %q, %d rows written; want incremental, nothing written", deref(r.mode), written(r))
	}
	var equal bool
	if err := pool.QueryRow(ctx, `SELECT NOT EXISTS ((TABLE mv_daily EXCEPT ALL TABLE mv_daily__definition) UNION ALL (TABLE mv_daily__definition EXCEPT ALL TABLE mv_daily))`).Scan(&equal); err != nil || !equal {
		t.Fatalf("mv_daily differs from its definition after the replay (%v)", err)
	}
}
