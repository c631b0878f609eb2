package daemon_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mvrefresher/mvrefresher/replication"
)

func TestTeardown(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	ctx := context.Background()

	if _, err := replication.Teardown(ctx, e.pool, e.pool, e.cfg.Slot, e.cfg.Publication, false); !errors.Is(err, replication.ErrSlotActive) {
		t.Fatalf("teardown of an active slot: %v, want ErrSlotActive", err)
	}
	e.stop()
	res, err := replication.Teardown(ctx, e.pool, e.pool, e.cfg.Slot, e.cfg.Publication, false)
	if err != nil || !res.SlotDropped || !res.PublicationDropped {
		t.Fatalf("teardown: %+v, %v", res, err)
	}
	var slots, pubs, logRows int
	if err := e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
		(SELECT count(*) FROM pg_publication WHERE pubname = $1), (SELECT count(*) FROM public.mv_refresh_log)`, e.cfg.Slot).
		Scan(&slots, &pubs, &logRows); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || pubs != 0 || logRows == 0 {
		t.Fatalf("after teardown: %d slots, %d publications, %d log rows; want the log kept", slots, pubs, logRows)
	}
	e.assertFresh(allViews...) // the views are untouched

	// Twice is harmless.
	if res, err := replication.Teardown(ctx, e.pool, e.pool, e.cfg.Slot, e.cfg.Publication, false); err != nil || res.SlotDropped || res.PublicationDropped {
		t.Fatalf("second teardown: %+v, %v", res, err)
	}
}
