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
