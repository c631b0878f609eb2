package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
)

func TestDaemon_ReconnectsWhenTheConnectionDrops(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	// Kill the walsender and every other connection of the daemon.
	e.exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'mvrefresher'`)
	e.exec("INSERT INTO app.events VALUES (40, '2026-01-01', 1, 1)")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

func TestDaemon_SurvivesAPostgreSQLCrash(t *testing.T) {
	for _, mode := range []string{"immediate", "fast"} {
		t.Run(mode, func(t *testing.T) { survivesRestart(t, mode) })
	}
}

// survivesRestart: a crash (immediate) breaks the connection; a clean
// shutdown (fast) ends the stream with CommandComplete.
func survivesRestart(t *testing.T, mode string) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	if err := sharedCluster(t).Restart(context.Background(), mode); err != nil {
		t.Fatal(err)
	}
	e.pool.Reset() // the test's own connections died too
	e.exec("INSERT INTO app.events VALUES (41, '2026-01-01', 2, 1)")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

func TestDaemon_StandbyTakesOver(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	second := daemon.New(e.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second instance: %v", err)
		}
	})
	e.waitFor("the second instance to be a standby", 30*time.Second, func() (bool, error) {
		return second.Standby() && !second.Ready(), nil
	})

	e.stop()
	e.waitFor("the standby to take over", 30*time.Second, func() (bool, error) {
		return second.Ready() && !second.Standby(), nil
	})
	e.exec("INSERT INTO app.events VALUES (42, '2026-01-01', 1, 1)")
	// Nothing was missed and nothing is refreshed at takeover but the change.
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

// A fast shutdown of the server is not held up while a change waits for
// its refresh: a logical walsender waits for its client to confirm all it
// was sent, the refresh that would let the daemon confirm cannot run while
// the server refuses connections, and without letting go the server would
// never stop. The held change stays in the slot and is refreshed after the
// restart. Restart fails if the fast shutdown had to be escalated.
func TestDaemon_FastShutdownIsNotHeldUp(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.Debounce, e.cfg.MaxWait = 6*time.Second, 30*time.Second
	e.start()
	e.settle()

	e.exec("INSERT INTO app.events VALUES (43, '2026-01-01', 1, 1)")
	sent := e.currentLSN()
	e.waitFor("the daemon to receive the change", 10*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_replication r
			JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1 AND r.sent_lsn >= $2`, e.cfg.Slot, sent).Scan(&n)
		return n == 1, err
	})
	if lsn, _, err := e.confirmedLSN(); err != nil || lsn >= sent {
		t.Fatalf("slot confirmed %s (%v) before the refresh of a change before %s", lsn, err, sent)
	}
	began := time.Now()
	if err := sharedCluster(t).Restart(context.Background(), "fast"); err != nil {
		t.Fatalf("fast restart with a change waiting for its refresh: %v", err)
	}
	// Not held up until the debounce ends and the refresh fails on the
	// refused connection either.
	if took := time.Since(began); took >= e.cfg.Debounce {
		t.Errorf("fast restart took %v, as long as the change's debounce (%v)", took.Round(time.Millisecond), e.cfg.Debounce)
	}
	e.pool.Reset()
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}

// A short wal_sender_timeout makes the walsender ask for a sign of life
// every few hundred milliseconds, sooner than three times a second: those
// pings are not a shutdown's. The daemon streams on without letting go
// while a change waits out its debounce, and refreshes it.
func TestDaemon_ShortWalSenderTimeoutIsNotAShutdown(t *testing.T) {
	pg := pgtest.Start(t, localpg.Options{Settings: map[string]string{"wal_sender_timeout": "600ms"}})
	e := newEnvOn(t, pg, schemaSQL)
	e.cfg.Debounce, e.cfg.MaxWait = 2*time.Second, 10*time.Second
	e.start()
	e.settle()
	walsender := e.walsenderPID()

	e.exec("INSERT INTO app.events VALUES (44, '2026-01-01', 1, 1)")
	e.waitFor("the change's refresh after its debounce", e.cfg.Debounce+10*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return slices.ContainsFunc(e.events, func(ev events.Refresh) bool {
			return ev.View == "app.mv_totals" && ev.Reason == events.ReasonChange && ev.Status == events.StatusOK
		}), nil
	})
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
	if now := e.walsenderPID(); now != walsender || strings.Contains(e.logs.String(), "reconnecting") {
		t.Errorf("the daemon let go of the stream (walsender %d, then %d):\n%s", walsender, now, e.logs.String())
	}
}

// walsenderPID is the pid of the walsender streaming the daemon's slot.
func (e *env) walsenderPID() int32 {
	e.t.Helper()
	var pid *int32
	if err := e.slotServer().QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", e.cfg.Slot).Scan(&pid); err != nil {
		e.t.Fatal(err)
	}
	if pid == nil {
		e.t.Fatal("nothing streams from the slot")
	}
	return *pid
}
