package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/daemon"
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

	if err := cluster.Restart(context.Background(), mode); err != nil {
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
