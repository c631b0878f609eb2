package daemon_test

import (
	"testing"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// filteredSchema: orders under REPLICA IDENTITY DEFAULT, and a view of the
// paid ones keyed by the primary key; the status is outside the identity.
const filteredSchema = `
CREATE TABLE app.orders (id bigint PRIMARY KEY, status text NOT NULL, amount numeric NOT NULL);
INSERT INTO app.orders SELECT g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'open' END, g FROM generate_series(1, 200) g;
CREATE MATERIALIZED VIEW app.paid AS SELECT id, amount FROM app.orders WHERE status = 'paid';
CREATE UNIQUE INDEX ON app.paid (id);`

// TestIncremental_FollowsOnlyRowsTheFilterKeeps: the stream hands over the
// column the view's WHERE reads, so many inserted rows it rejects name
// nothing (they would otherwise name more rows than the view has, and
// make the maintenance recompute it whole); an UPDATE moving a row out of
// the WHERE, which sends no old row, still removes it.
func TestIncremental_FollowsOnlyRowsTheFilterKeeps(t *testing.T) {
	e := newEnv(t, filteredSchema)
	incremental := true
	e.cfg.Views = map[string]config.View{"app.paid": {Incremental: &incremental}}
	e.start()
	e.settle()
	if k := e.relkind("app.paid"); k != "r" {
		t.Fatalf("app.paid has relkind %q after the start: incremental maintenance was not turned on", k)
	}
	e.forgetEvents()

	e.exec(`BEGIN;
		INSERT INTO app.orders SELECT g, 'open', 1 FROM generate_series(1001, 1300) g;
		INSERT INTO app.orders VALUES (2001, 'paid', 5);
		UPDATE app.orders SET status = 'open' WHERE id = 2;
		COMMIT;`)
	ev := e.waitEvent("the maintenance of app.paid", func(ev events.Refresh) bool { return ev.View == "app.paid" && ev.Status == events.StatusOK })
	e.assertMaintained("app.paid")
	if ev.Maintenance != "incremental" || deref(ev.Groups) != int64(1) || deref(ev.RowsWritten) != int64(2) {
		t.Fatalf("300 open orders, one paid, one paid order reopened: got maintenance %q (%q), groups %v, rows written %v; want incremental, 1 group, 2 rows written",
			ev.Maintenance, ev.FullReason, deref(ev.Groups), deref(ev.RowsWritten))
	}
}
