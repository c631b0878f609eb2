package publish_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats/natstest"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/publish"
)

// TestPublisher_JetStreamOutageLongerThanRetries: NATS goes away after the
// publisher connected, for longer than its 5 JetStream publish attempts
// take. The event of a refresh made meanwhile is not given up: once NATS is
// back the stream acknowledges it, the latest-event bucket holds it, and no
// event is counted as dropped.
func TestPublisher_JetStreamOutageLongerThanRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("a 40 s outage; -short")
	}
	port, store := natstest.FreePort(t), t.TempDir()
	ns := natstest.StartOn(t, port, store, nil)
	cfg := config.NATS{URL: ns.ClientURL(), SubjectPrefix: "outage", JetStream: true, Stream: "S_outage"}
	m := metrics.New(func() bool { return true }, func() bool { return false })
	pub := runPublisher(t, cfg, m)
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// latestTotalsAfter: the bucket holds an event of app.mv_totals at or
	// after lsn.
	latestTotalsAfter := func(lsn pglogrepl.LSN) func() (bool, error) {
		return func() (bool, error) {
			kv, err := js.KeyValue(context.Background(), events.LatestBucket(cfg.Stream))
			if err != nil {
				return false, nil // not created yet, or NATS still reconnecting
			}
			entry, err := kv.Get(context.Background(), events.LatestKey("app", "mv_totals"))
			if err != nil {
				return false, nil
			}
			var ev events.Refresh
			if err := json.Unmarshal(entry.Value(), &ev); err != nil {
				return false, err
			}
			got, err := pglogrepl.ParseLSN(ev.LSN)
			return err == nil && got >= lsn, nil
		}
	}
	views := []string{"mv_totals", "mv_big", "mv_grand", "mv_daily", "mv_barrier"}
	for _, view := range views {
		pub.PublishRefresh("app", view, refreshed("app."+view, events.ReasonStartup, 0x1000))
	}
	waitFor(t, "the startup events of the 5 views in the bucket", 30*time.Second, func() (bool, error) {
		kv, err := js.KeyValue(context.Background(), events.LatestBucket(cfg.Stream))
		if err != nil {
			return false, nil // not created yet
		}
		keys, err := kv.Keys(context.Background())
		return err == nil && len(keys) == 5, nil
	})

	ns.Shutdown()
	// Taken while NATS is away: a PublishRefresh that waited for NATS would
	// hang here, since NATS comes back only after the outage below.
	const during = pglogrepl.LSN(0x2000)
	pub.PublishRefresh("app", "mv_totals", refreshed("app.mv_totals", events.ReasonChange, during))
	// Each attempt waits 5 s for the acknowledgement and the attempts are
	// 0.5 s to 2 s apart: the 5 attempts take 30 s. No condition marks the
	// end of the outage: its length is the test's input.
	time.Sleep(40 * time.Second)

	natstest.StartOn(t, port, store, nil)
	waitFor(t, "the change's event of app.mv_totals in the bucket", 30*time.Second, latestTotalsAfter(during))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body, _ := io.ReadAll(rec.Body); !strings.Contains(string(body), "\nmvrefresher_events_dropped_total 0\n") {
		t.Errorf("events were counted as dropped:\n%s", body)
	}
}

// runPublisher opens a publisher and runs it until the test ends.
func runPublisher(t *testing.T, cfg config.NATS, m *metrics.Metrics) *publish.Publisher {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	pub, err := publish.Open(cfg, m, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { pub.Run(ctx); close(stopped) }()
	t.Cleanup(func() {
		stop()
		<-stopped
		pub.Close()
	})
	return pub
}

// refreshed is a successful refresh event of view at lsn.
func refreshed(view string, reason events.Reason, lsn pglogrepl.LSN) events.Refresh {
	now := time.Now()
	return events.Refresh{View: view, Status: events.StatusOK, Reason: reason, StartedAt: now, FinishedAt: now, LSN: lsn.String(), Attempt: 1}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	if err := wait.Until(what, timeout, cond); err != nil {
		t.Fatal(err)
	}
}
