package daemon_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/replication"
)

// TestDaemon_RecreatesAnInvalidatedSlot: a slot the server invalidated is
// no disaster for a refresher: recreate it and refresh every view once. The
// server invalidates a slot whose WAL is gone (max_slot_wal_keep_size) and,
// from PostgreSQL 18 on, one idle too long (idle_replication_slot_timeout).
func TestDaemon_RecreatesAnInvalidatedSlot(t *testing.T) {
	mechanisms := []string{"max_slot_wal_keep_size"}
	if serverMajor(t) >= 18 {
		mechanisms = append(mechanisms, "idle_replication_slot_timeout")
	}
	for _, m := range mechanisms {
		t.Run(m, func(t *testing.T) { recreatesAnInvalidatedSlot(t, m) })
	}
}

func recreatesAnInvalidatedSlot(t *testing.T, mechanism string) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	e.stop()

	// Let the server invalidate the idle slot: keep at most 1MB of WAL for
	// slots and write past a few segments, or let it idle for a second;
	// then checkpoint.
	value := map[string]string{"max_slot_wal_keep_size": "1MB", "idle_replication_slot_timeout": "1s"}[mechanism]
	e.serverSettings(map[string]string{mechanism: value})
	e.exec("INSERT INTO app.events VALUES (70, '2026-01-01', 1, 1)") // lost with the slot
	e.waitFor("the slot to be invalidated", 60*time.Second, func() (bool, error) {
		for range 3 {
			if _, err := e.pool.Exec(context.Background(), "SELECT pg_logical_emit_message(false, 'test', repeat('x', 1000)); SELECT pg_switch_wal()"); err != nil {
				return false, err
			}
		}
		if _, err := e.pool.Exec(context.Background(), "CHECKPOINT"); err != nil {
			return false, err
		}
		var lost bool
		err := e.pool.QueryRow(context.Background(), `SELECT wal_status = 'lost' OR to_jsonb(s)->>'invalidation_reason' IS NOT NULL
			FROM pg_replication_slots s WHERE slot_name = $1`, e.cfg.Slot).Scan(&lost)
		return lost, err
	})

	// on_slot_lost: stop leaves it to an operator.
	stopCfg := e.cfg
	stopCfg.OnSlotLost = config.OnSlotLostStop
	err := daemon.New(stopCfg, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background())
	if !errors.Is(err, replication.ErrSlotLost) {
		t.Fatalf("with on_slot_lost: stop, Run returned %v, want ErrSlotLost", err)
	}

	e.start()
	e.expectEvents(e.settle(), "app.mv_totals startup ok", "app.mv_big startup ok", "app.mv_grand startup ok", quotedView+" startup ok")
	e.assertFresh(allViews...)
}

// TestDaemon_SurvivesADroppedPublication: a user drops the publication.
// PostgreSQL 15 to 17 then fail to decode any change written while it was
// missing, also once it exists again; the daemon recreates it and the slot,
// refreshes every view once, and goes on.
func TestDaemon_SurvivesADroppedPublication(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	e.exec("DROP PUBLICATION " + e.cfg.Publication)
	e.exec("INSERT INTO app.events VALUES (71, '2026-01-01', 1, 1)") // written while it is missing
	e.waitFor("the publication to be back", 30*time.Second, func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_publication WHERE pubname = $1", e.cfg.Publication).Scan(&n)
		return n == 1, err
	})
	// Discovery may put the publication back first, and refresh every view
	// for it. Up to PostgreSQL 17 the stream then fails on the WAL written
	// without it, and the next attempt recreates the slot, marks every view
	// owed before that ("starting" is logged after) and refreshes each once
	// more; 18 decodes past it.
	if serverMajor(t) < 18 {
		e.waitFor("the slot to be recreated", 30*time.Second, func() (bool, error) {
			logs := e.logs.String()
			return strings.Contains(logs, "the slot cannot decode WAL written while the publication was dropped") &&
				strings.Count(logs, `msg=starting `) >= 2, nil
		})
	}
	e.waitFor("every view refreshed once after it", 30*time.Second, func() (bool, error) {
		var owed int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM public.mv_refresh_log WHERE lsn IS NULL`).Scan(&owed)
		return owed == 0, err
	})
	evs := e.settle()
	for _, v := range allViews {
		if !slices.ContainsFunc(evs, func(ev events.Refresh) bool { return ev.View == v && ev.Reason == events.ReasonStartup }) {
			t.Errorf("no startup refresh of %s after the slot was recreated: %q", v, summary(evs))
		}
	}
	e.assertFresh(allViews...)
	e.exec("INSERT INTO app.events VALUES (72, '2026-01-01', 1, 1)")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}
