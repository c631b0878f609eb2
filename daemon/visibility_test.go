package daemon_test

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/events"
)

// serverSettings applies settings to the shared cluster (ALTER SYSTEM) until
// the test ends, and waits until new sessions see them.
func (e *env) serverSettings(settings map[string]string) {
	e.t.Helper()
	for name, value := range settings {
		e.exec("ALTER SYSTEM SET " + pgx.Identifier{name}.Sanitize() + " = '" + value + "'")
	}
	e.exec("SELECT pg_reload_conf()")
	e.t.Cleanup(func() {
		for name := range settings {
			e.exec("ALTER SYSTEM RESET " + pgx.Identifier{name}.Sanitize())
		}
		e.exec("SELECT pg_reload_conf()")
	})
	for name, value := range settings {
		e.waitFor(name+" to be in effect", 10*time.Second, func() (bool, error) {
			var got string
			err := e.pool.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&got)
			return got == value, err
		})
	}
}

// commitHeldByStandby runs sql, which commits, in a session of its own with
// synchronous_commit on (under serverSettings naming a standby that does
// not exist), and returns once the commit waits for the standby: the
// daemon is sent it, other sessions do not see it. release cancels the
// wait (the commit stays, and becomes visible); committed reports sql's
// end.
func (e *env) commitHeldByStandby(sql string) (release func(), committed <-chan error) {
	e.t.Helper()
	ctx := context.Background()
	app, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { app.Close(ctx) })
	done := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "SET synchronous_commit = on; "+sql)
		done <- err
	}()
	e.waitFor("the commit to wait for the standby", 10*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'", app.PgConn().PID()).Scan(&n)
		return n == 1, err
	})
	return func() { e.exec("SELECT pg_cancel_backend($1)", app.PgConn().PID()) }, done
}

// A commit is sent to the daemon once it is flushed, but with synchronous
// replication other sessions see it only once a standby confirms it. A
// refresh in between must not count it as included: the view would miss it
// for good. Here the standby never confirms (it does not exist) until the
// application gives up waiting; the refresh request in the same transaction
// asks for a refresh at once.
func TestDaemon_RefreshWaitsForACommitToBeVisible(t *testing.T) {
	e := newEnv(t, schemaSQL)
	// Only the application's session waits for the standby.
	e.serverSettings(map[string]string{"synchronous_standby_names": "nosuch", "synchronous_commit": "local"})
	e.start()
	e.settle()

	release, committed := e.commitHeldByStandby(`BEGIN;
		INSERT INTO app.events VALUES (70, '2026-04-01', 1, 5);
		SELECT pg_logical_emit_message(true, 'mvrefresher', 'app.mv_totals');
		COMMIT`)
	// The daemon has the commit and tries to refresh; a refresh that counts
	// it as included publishes its event.
	e.waitFor("the daemon to try to refresh mv_totals", 10*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.View == "app.mv_totals" {
				return true, nil
			}
		}
		return strings.Contains(e.logs.String(), "not visible yet"), nil
	})
	waitingCommitEnd := e.currentLSN()
	// A later commit that is visible at once is refreshed meanwhile; the
	// slot still holds the invisible one.
	e.exec("INSERT INTO app.events VALUES (71, '2026-04-01', 2, 5)")
	e.waitEvent("a refresh of mv_totals with the visible commit", func(ev events.Refresh) bool {
		return ev.View == "app.mv_totals" && ev.Status == events.StatusOK
	})
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= waitingCommitEnd {
		t.Fatalf("slot confirmed %s (%v) past a commit no refresh could see (before %s)", lsn, err, waitingCommitEnd)
	}
	release()
	if err := <-committed; err != nil {
		t.Fatalf("the application's commit: %v", err)
	}
	e.settle()
	e.assertFresh(allViews...)

	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !regexp.MustCompile(`mvrefresher_visibility_waits_total\{view="app.mv_totals"\} [1-9]`).MatchString(rec.Body.String()) {
		t.Errorf("no visibility wait counted for app.mv_totals")
	}
}
