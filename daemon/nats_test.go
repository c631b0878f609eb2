package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats/natstest"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// TestDaemon_NATSDownDoesNotDelayRefreshes: with JetStream configured and
// NATS down, refreshes and the refresh log go on; the events wait in memory
// and reach the stream (created by the daemon) once NATS is up.
func TestDaemon_NATSDownDoesNotDelayRefreshes(t *testing.T) {
	e := newEnv(t, schemaSQL)
	port := natstest.FreePort(t)
	e.cfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	e.cfg.NATS.JetStream, e.cfg.NATS.Stream = true, "S_"+e.name
	e.start()

	e.waitFor("the startup refreshes without NATS", 30*time.Second, e.refreshCountReaches("app.mv_grand", 1))
	e.exec("INSERT INTO app.events VALUES (50, '2026-01-01', 1, 1)")
	e.waitFor("the change refreshed without NATS", 30*time.Second, e.refreshCountReaches("app.mv_grand", 2))

	ns := natstest.StartOn(t, port, t.TempDir(), nil)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// 5 startup events (4 views and the barrier view) and 3 for the change;
	// slot events land in the stream too, on their own subject.
	refreshed := e.cfg.NATS.SubjectPrefix + ".refreshed.>"
	e.waitFor("the buffered events in the stream", 60*time.Second, func() (bool, error) {
		st, err := js.Stream(context.Background(), e.cfg.NATS.Stream)
		if err != nil {
			return false, nil // not created yet
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(refreshed))
		if err != nil {
			return false, err
		}
		n := uint64(0)
		for _, count := range info.State.Subjects {
			n += count
		}
		return n == 8, nil
	})
	st, err := js.Stream(context.Background(), e.cfg.NATS.Stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(context.Background(), e.cfg.NATS.SubjectPrefix+".refreshed.app.mv_grand")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg.Data), `"reason":"cascade"`) || msg.Header.Get(nats.MsgIdHdr) == "" {
		t.Errorf("last mv_grand event: %s (headers %v)", msg.Data, msg.Header)
	}
	// The latest event of every view is kept for late subscribers.
	kv, err := js.KeyValue(context.Background(), events.LatestBucket(e.cfg.NATS.Stream))
	if err != nil {
		t.Fatal(err)
	}
	// Recorded right after the stream acknowledged the event.
	e.waitFor("the latest mv_grand event in the bucket to be the cascade", 30*time.Second, func() (bool, error) {
		entry, err := kv.Get(context.Background(), events.LatestKey("app", "mv_grand"))
		return err == nil && strings.Contains(string(entry.Value()), `"reason":"cascade"`), nil
	})
}

// TestDaemon_NATSDownAtStartKeepsEvents: NATS is not running when the
// daemon starts. The refresh event of a change made meanwhile waits in
// memory and arrives once NATS is started on the configured port, and the
// log says when the daemon connected.
func TestDaemon_NATSDownAtStartKeepsEvents(t *testing.T) {
	e := newEnv(t, schemaSQL)
	port := natstest.FreePort(t)
	e.cfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	e.start()

	e.waitFor("the startup refreshes without NATS", 30*time.Second, e.refreshCountReaches("app.mv_totals", 1))
	before := e.currentLSN()
	e.exec("INSERT INTO app.events VALUES (51, '2026-01-01', 1, 1)")
	e.waitFor("the change refreshed without NATS", 30*time.Second, e.refreshCountReaches("app.mv_totals", 2))

	// Core NATS keeps nothing for a subscriber that is not there yet: the
	// daemon is let in only once the test's subscription is.
	subscribed := make(chan struct{})
	ns := natstest.StartOn(t, port, t.TempDir(), admitAfter{name: "mvrefresher", ready: subscribed})
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("test-subscriber"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(e.cfg.NATS.SubjectPrefix+".>", e.receive); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	close(subscribed)

	e.waitEvent("the change's refresh event, published while NATS was down", func(ev events.Refresh) bool {
		lsn, err := pglogrepl.ParseLSN(ev.LSN)
		return err == nil && ev.View == "app.mv_totals" && ev.Reason == "change" && lsn > before
	})
	if !strings.Contains(e.logs.String(), `msg="connected to NATS"`) {
		t.Errorf("no log line says the daemon connected to NATS; the log:\n%s", e.logs.String())
	}
}

func TestDaemon_Metrics(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.start()
	e.settle()
	e.exec("INSERT INTO app.events VALUES (60, '2026-01-01', 1, 1)")
	e.settle()

	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`mvrefresher_refreshes_total{status="ok",view="app.mv_totals"} 2`,
		`mvrefresher_refresh_duration_seconds_count{view="app.mv_totals"} 2`,
		`mvrefresher_rows_changed_total{op="inserted",view="app.mv_totals"} 1`,
		`mvrefresher_wal_changes_total{table="app.events"} 1`,
		`mvrefresher_replication_connected 1`,
		`mvrefresher_standby 0`,
		`mvrefresher_pending_views 0`,
		`mvrefresher_events_dropped_total 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

// refreshCountReaches is a waitFor condition: the view has been refreshed
// at least want times.
func (e *env) refreshCountReaches(view string, want int64) func() (bool, error) {
	return func() (bool, error) {
		var n int64
		err := e.pool.QueryRow(context.Background(), `SELECT coalesce(max(refresh_count), 0) FROM public.mv_refresh_log WHERE mv_name = $1`, view).Scan(&n)
		if refresher.SQLState(err) == pgerrcode.UndefinedTable {
			return false, nil // the daemon has not created the log yet
		}
		return n >= want, err
	}
}

// admitAfter holds the connection of the client called name until ready is
// closed, and admits every other client at once.
type admitAfter struct {
	name  string
	ready <-chan struct{}
}

func (a admitAfter) Check(c server.ClientAuthentication) bool {
	if c.GetOpts().Name == a.name {
		<-a.ready
	}
	return true
}
