package daemon_test

import (
	"testing"
	"time"
)

// A partition created after the last discovery: the stream's goroutine
// looks up which published table it belongs to, and only the views reading
// that table refresh.
func TestDaemon_NewPartitionBeforeItsDiscovery(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.DiscoveryInterval = time.Hour
	e.start()
	e.settle()
	e.exec("CREATE TABLE app.events_2027 PARTITION OF app.events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
	e.exec("INSERT INTO app.events VALUES (4, '2027-05-01', 2, 7)")
	e.expectEvents(e.settle(), "app.mv_totals change ok", "app.mv_big change ok", "app.mv_grand cascade ok")
	e.assertFresh(allViews...)
}
