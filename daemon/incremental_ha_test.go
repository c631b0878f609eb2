package daemon_test

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
)

// second is an instance beside the test's env's, on the same slot.
type second struct {
	daemon *daemon.Daemon
	logs   *lockedBuffer
}

// startSecond runs another instance with cfg until the test ends.
func (e *env) startSecond(cfg config.Config) second {
	e.t.Helper()
	s := second{logs: &lockedBuffer{}}
	s.daemon = daemon.New(cfg, slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", "second"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.daemon.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("second instance: %v", err)
		}
	})
	return s
}

// relationOID reads the oid of the relation name.
func (e *env) relationOID(name string) uint32 {
	e.t.Helper()
	var oid uint32
	if err := e.pool.QueryRow(context.Background(), "SELECT $1::regclass::oid", name).Scan(&oid); err != nil {
		e.t.Fatal(err)
	}
	return oid
}

// TestIncremental_StandbyTakesOver is TestDaemon_StandbyTakesOver with a
// maintained view. The second instance, started once the first has
// converted the view, stands by; the first stops with a maintenance
// committed that the slot has not confirmed (another view's pending
// refresh holds it). The second takes over from the slot: it finds the
// view converted and leaves it be, maintains the replayed change again
// one group at a time (writing nothing) and the next one likewise, and the
// table equals its definition throughout.
func TestIncremental_StandbyTakesOver(t *testing.T) {
	hour, zero := time.Hour, time.Duration(0)
	e, _ := incrementalEnv(t, map[string]config.View{"app.slow": {Debounce: &hour, MaxWait: &zero}})
	e.start()
	e.settle()
	converted := e.relationOID("app.daily")

	cfg := e.cfg
	cfg.Views = maps.Clone(e.cfg.Views)
	cfg.Views["app.slow"] = config.View{}
	other := e.startSecond(cfg)
	e.waitFor("the second instance to be a standby", 30*time.Second, func() (bool, error) {
		return other.daemon.Standby() && !other.daemon.Ready(), nil
	})

	e.exec("INSERT INTO app.events VALUES (5001, 100, '2026-01-05 10:00+00')")
	target := e.currentLSN()
	ev := e.maintenanceOf("the first instance's maintenance of the insert")
	if ev.Maintenance != "incremental" || deref(ev.RowsWritten) != int64(1) {
		t.Fatalf("the insert: got maintenance %q (%q), rows written %v; want incremental, 1", ev.Maintenance, ev.FullReason, deref(ev.RowsWritten))
	}
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= target {
		t.Fatalf("the slot confirmed %s (%v) past the change at %s: app.slow's pending refresh should hold it", lsn, err, target)
	}
	e.forgetEvents()

	e.stop()
	e.waitFor("the standby to take over", 30*time.Second, func() (bool, error) {
		return other.daemon.Ready() && !other.daemon.Standby(), nil
	})
	ev = e.maintenanceOf("the second instance's maintenance of the replayed insert")
	e.expectIncremental(ev, "the replayed insert after the takeover", 0)
	e.forgetEvents()

	e.exec("INSERT INTO app.events VALUES (5002, 100, '2026-01-06 10:00+00')")
	ev = e.maintenanceOf("the second instance's maintenance of a new insert")
	e.expectIncremental(ev, "an insert after the takeover", 1)
	e.settle()
	e.assertMaintained("app.daily")
	if oid := e.relationOID("app.daily"); oid != converted {
		t.Errorf("app.daily was created again at the takeover (oid %d, was %d)", oid, converted)
	}
	if logs := other.logs.String(); strings.Contains(logs, "incremental maintenance on") || strings.Contains(logs, "cannot maintain") {
		t.Errorf("the second instance tried to convert app.daily again:\n%s", logs)
	}
}

// TestIncremental_PairStartingTogetherConvertsOnce starts both instances of
// a pair at once, before either has a slot, while the view is in use: both
// go to convert it, one does, and the other finds it converted, neither
// failing nor saying that the view stays a materialized view. A
// transaction left running makes the slot's creation wait, so that the
// other instance finds the slot being created: it stands by. The one that
// streams then maintains the view.
func TestIncremental_PairStartingTogetherConvertsOnce(t *testing.T) {
	e, _ := incrementalEnv(t, map[string]config.View{})
	ctx := context.Background()
	daily := e.relationOID("app.daily")
	reader, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.Rollback(ctx) }()
	// A lock as strong as the conversion's: both instances wait for it.
	if _, err := reader.Exec(ctx, "ALTER MATERIALIZED VIEW app.daily OWNER TO CURRENT_USER"); err != nil {
		t.Fatal(err)
	}
	running, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = running.Rollback(ctx) }()
	if _, err := running.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	e.start()
	other := e.startSecond(e.cfg)
	e.waitFor("both instances to wait for app.daily", 10*time.Second, func() (bool, error) {
		var waiting int
		err := e.pool.QueryRow(ctx, `SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.relation = $1 AND NOT l.granted AND a.application_name = 'mvrefresher'`, daily).Scan(&waiting)
		return waiting == 2, err
	})
	if err := reader.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor("one instance to create the slot, the other to stand by", 10*time.Second, func() (bool, error) {
		return e.daemon.Standby() != other.daemon.Standby(), nil
	})
	if err := running.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if k := e.relkind("app.daily"); k != "r" {
		t.Fatalf("app.daily has relkind %q after the start: incremental maintenance was not turned on", k)
	}
	e.assertMaintained("app.daily")
	logs := e.logs.String() + other.logs.String()
	if n := strings.Count(logs, "the view is now a table mvrefresher maintains"); n != 1 || strings.Contains(logs, "cannot maintain") ||
		!strings.Contains(logs, "another instance turned it on meanwhile") {
		t.Errorf("the pair converted app.daily %d times, or said it could not, or the other did not say it found it converted:\n%s", n, logs)
	}

	e.exec("INSERT INTO app.events VALUES (5001, 100, '2026-01-05 10:00+00')")
	ev := e.maintenanceOf("the maintenance of an insert")
	e.expectIncremental(ev, "an insert", 1)
}
