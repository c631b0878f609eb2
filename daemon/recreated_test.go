package daemon_test

import (
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/events"
)

// A migration that drops a view and creates it again under its name with
// another definition makes it a new view: its changes were routed with the
// old dependencies until discovery saw it, so it gets a startup refresh.
func TestDaemon_RecreatedViewIsANewView(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()

	// The new definition reads app.events, published for other views
	// already; the insert after it is routed with the old catalog.
	e.exec(`BEGIN;
		DROP MATERIALIZED VIEW ` + quotedView + `;
		CREATE MATERIALIZED VIEW ` + quotedView + ` AS SELECT id, at, amount FROM app.events;
		CREATE UNIQUE INDEX ON ` + quotedView + ` (id, at);
		INSERT INTO app.events VALUES (60, '2026-03-01', 1, 7);
		COMMIT`)
	e.waitFor("a refresh of the re-created view", 10*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.View == quotedView && ev.Status == events.StatusOK {
				return true, nil
			}
		}
		return false, nil
	})
	e.settle()
	e.assertFresh(allViews...)
}

// Views dropped and created again while the daemon is stopped are new
// views, whatever their log rows say: one created WITH NO DATA would
// answer "has not been populated" to every reader, and one created with
// data under another definition has no refresh of its own in the log. A
// view left unpopulated by REFRESH ... WITH NO DATA is owed one too.
func TestDaemon_ViewsRecreatedWhileStoppedAreOwed(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	e.stop()

	e.exec(`DROP MATERIALIZED VIEW app.mv_grand;
		CREATE MATERIALIZED VIEW app.mv_grand AS SELECT sum(n) AS n, sum(total) AS total FROM app.mv_totals WITH NO DATA;
		CREATE UNIQUE INDEX ON app.mv_grand (n);
		DROP MATERIALIZED VIEW ` + quotedView + `;
		CREATE MATERIALIZED VIEW ` + quotedView + ` AS SELECT id, upper(name) AS name FROM app.accounts;
		CREATE UNIQUE INDEX ON ` + quotedView + ` (id);
		REFRESH MATERIALIZED VIEW app.mv_big WITH NO DATA`)
	e.start()
	evs := e.settle()
	e.expectEvents(evs, "app.mv_grand startup ok", "app.mv_big startup ok", quotedView+" startup ok")
	e.assertFresh(allViews...)

	// The log rows are the new views' now: the next start owes nothing.
	e.stop()
	e.start()
	e.expectEvents(e.settle())

	// While running, discovery notices a view emptied WITH NO DATA.
	e.exec("REFRESH MATERIALIZED VIEW app.mv_big WITH NO DATA")
	e.waitEvent("a refresh of the emptied view", func(ev events.Refresh) bool {
		return ev.View == "app.mv_big" && ev.Status == events.StatusOK
	})
	e.settle()
	e.assertFresh(allViews...)
}
