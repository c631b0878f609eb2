package daemon_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
)

// startPair starts a primary of the test's own, with primarySettings, and a
// physical standby of it named standby1 (hot_standby_feedback on, and
// standbySettings), stopped when the test ends.
func startPair(t *testing.T, primarySettings, standbySettings map[string]string) (primary, standby *localpg.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary = pgtest.Start(t, localpg.Options{Settings: primarySettings})
	settings := map[string]string{"hot_standby_feedback": "on"}
	for k, v := range standbySettings {
		settings[k] = v
	}
	standby, err := primary.StartStandby(ctx, "standby1", localpg.Options{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := standby.Stop(context.Background()); err != nil {
			t.Errorf("stop the standby: %v", err)
		}
	})
	return primary, standby
}

// writeLoad commits one insert into app.events per transaction for d,
// alternating the given synchronous_commit levels, with ids from first on.
// It returns the next id.
func (e *env) writeLoad(d time.Duration, first int, levels ...string) int {
	e.t.Helper()
	id := first
	for end := time.Now().Add(d); time.Now().Before(end); id++ {
		e.exec(fmt.Sprintf(`BEGIN; SET LOCAL synchronous_commit = %s;
			INSERT INTO app.events VALUES (%d, '2026-05-01', %d, %d); COMMIT`, levels[id%len(levels)], id, 1+id%2, id%150))
		time.Sleep(5 * time.Millisecond)
	}
	return id
}

// backgroundLoad inserts into app.events through url, one transaction at a
// time, from id first on, until the returned stop is called; stop returns
// how many commits succeeded. Failures (the primary dying, the standby not
// promoted yet) are expected: it reconnects and goes on.
func (e *env) backgroundLoad(url string, first int) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		var conn *pgx.Conn
		committed := 0
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
			done <- committed
		}()
		for id := first; ctx.Err() == nil; id++ {
			if conn == nil {
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				conn = c
			}
			if _, err := conn.Exec(ctx, "INSERT INTO app.events VALUES ($1, '2026-05-04', $2, $3)", id, 1+id%2, id%150); err != nil {
				conn.Close(context.Background())
				conn = nil
				continue
			}
			committed++
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() int { cancel(); return <-done }
}

// failover kills the primary under the load and promotes the standby.
func (e *env) failover(primary, standby *localpg.Cluster, both string, first int) {
	e.t.Helper()
	stop := e.backgroundLoad(both, first)
	loaded := func(min int) func() (bool, error) {
		return func() (bool, error) {
			var n int
			err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM app.events WHERE id >= $1", first).Scan(&n)
			return n >= min, err
		}
	}
	e.waitFor("the load to run", 10*time.Second, loaded(50))
	ctx := context.Background()
	if err := primary.Halt(ctx, "immediate"); err != nil {
		e.t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.connect(both)
	var before int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM app.events WHERE id >= $1", first).Scan(&before); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("the load to run on the new primary", 30*time.Second, loaded(before+50))
	e.t.Logf("%d commits under the load", stop())
}

// visibilityWaits reads mvrefresher_visibility_waits_total for view.
func (e *env) visibilityWaits(view string) int {
	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := regexp.MustCompile(`mvrefresher_visibility_waits_total\{view="` + regexp.QuoteMeta(view) + `"\} (\d+)`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// With a synchronous standby, every commit is decoded before the
// committing session (and so any refresh) can see it. Under a write load
// at synchronous_commit on and remote_apply every view ends equal to its
// definition; with the standby stopped for longer than the debounce, the
// waiting commit is refreshed once the standby is back, with nothing after
// it to hide a miss.
func TestDaemon_SynchronousStandby(t *testing.T) {
	primary, standby := startPair(t, map[string]string{"synchronous_commit": "on", "synchronous_standby_names": "standby1"}, nil)
	e := newEnvOn(t, primary, schemaSQL)
	e.start()
	e.settle()

	next := e.writeLoad(3*time.Second, 1000, "on", "remote_apply")
	e.settle()
	e.assertFresh(allViews...)

	ctx := context.Background()
	if err := standby.Halt(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	before := e.visibilityWaits("app.mv_totals")
	committed := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, fmt.Sprintf("INSERT INTO app.events VALUES (%d, '2026-05-02', 2, 9)", next))
		committed <- err
	}()
	// Longer than the debounce: the daemon has tried to refresh. A refresh
	// that counts the commit as included waits for the standby to commit.
	e.waitFor("the daemon to try to refresh mv_totals", 10*time.Second, func() (bool, error) {
		var refreshing int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'mvrefresher' AND wait_event = 'SyncRep'`).Scan(&refreshing)
		return refreshing > 0 || e.visibilityWaits("app.mv_totals") > before+3, err
	})
	if err := standby.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("the commit waiting for the standby: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit still waits 30 s after the standby came back")
	}
	e.settle()
	e.assertFresh(allViews...)
}

// serverMajor is the major version of the server binaries under test.
func serverMajor(t *testing.T) int {
	t.Helper()
	var version int
	if err := queryRowAt(sharedCluster(t).URL("postgres"), "SELECT current_setting('server_version_num')::int", &version); err != nil {
		t.Fatal(err)
	}
	return version / 10000
}

// queryRowAt runs one query on a connection of its own to url.
func queryRowAt(url, sql string, dest ...any) error {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(context.Background(), sql).Scan(dest...)
}

// Failover: the primary dies under load and the standby is promoted; the
// daemon, given both hosts (target_session_attrs=read-write), finds the new
// primary.
//
// Without a slot that follows the failover (PostgreSQL 15 and 16, or slot
// sync not configured) it creates its slot there and refreshes every view
// once, which covers whatever the old primary's slot had not confirmed.
//
// From PostgreSQL 17 on the daemon's slot is a failover slot: with
// sync_replication_slots on the standby and synchronized_standby_slots on
// the primary, the standby keeps a copy that the daemon never gets ahead
// of, and after the failover the daemon resumes from it, refreshing only
// what changed.
func TestDaemon_Failover(t *testing.T) {
	t.Run("without slot sync", func(t *testing.T) { testFailover(t, false) })
	if serverMajor(t) >= 17 {
		t.Run("with slot sync", func(t *testing.T) { testFailover(t, true) })
	}
}

func testFailover(t *testing.T, slotSync bool) {
	var primarySettings, standbySettings map[string]string
	if slotSync {
		primarySettings = map[string]string{"synchronized_standby_slots": "standby1"}
		// The new primary has no standby: listing one there would make its
		// logical walsenders wait for it forever.
		standbySettings = map[string]string{"sync_replication_slots": "on", "synchronized_standby_slots": ""}
	}
	primary, standby := startPair(t, primarySettings, standbySettings)
	e := newEnvOn(t, primary, schemaSQL)
	both := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		primary.Port(), standby.Port(), e.name)
	e.cfg.DatabaseURL = both
	e.start()
	e.settle()
	if slotSync {
		confirmed, _, err := e.confirmedLSN()
		if err != nil {
			t.Fatal(err)
		}
		e.waitFor("the standby's copy of the slot", 60*time.Second, func() (bool, error) {
			var synced *pglogrepl.LSN
			err := queryRowAt(standby.URL(e.name), fmt.Sprintf(`SELECT max(confirmed_flush_lsn)
				FROM pg_replication_slots WHERE slot_name = '%s' AND synced AND NOT temporary`, e.cfg.Slot), &synced)
			return err == nil && synced != nil && *synced >= confirmed, nil
		})
	}
	e.forgetEvents()
	e.failover(primary, standby, both, 3000)
	evs := e.settle()
	startups := slices.DeleteFunc(slices.Clone(evs), func(ev events.Refresh) bool { return ev.Reason != events.ReasonStartup })
	if slotSync {
		// Resumed from the copy: what changed is refreshed, nothing else.
		if len(startups) > 0 || !slices.ContainsFunc(evs, func(ev events.Refresh) bool { return ev.View == "app.mv_totals" && ev.Reason == events.ReasonChange }) {
			t.Errorf("after a failover with a synced slot: %q, want change refreshes only", summary(evs))
		}
	} else {
		for _, v := range allViews {
			if !slices.ContainsFunc(startups, func(ev events.Refresh) bool { return ev.View == v }) {
				t.Errorf("no startup refresh of %s on the new primary: %q", v, summary(evs))
			}
		}
	}
	e.assertFresh(allViews...)
}
