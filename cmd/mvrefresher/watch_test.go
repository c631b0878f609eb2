package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats"
	"github.com/mvrefresher/mvrefresher/internal/wait"
)

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.Until(what, 10*time.Second, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	ns, err := localnats.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publish := func(view, schema, name string, status events.Status) {
		ins, del := int64(1), int64(1)
		e := events.Refresh{View: view, Status: status, Reason: events.ReasonChange, Concurrently: true,
			FinishedAt: time.Now(), DurationMS: 12.5, LSN: "0/1", Sources: []string{"core.fact_events"}, Changes: 3,
			StalenessMS: 1500, RowsInserted: &ins, RowsDeleted: &del, Attempt: 1}
		if status == events.StatusFailed {
			e.Error = "refresh boom: division by zero"
		}
		data, _ := json.Marshal(e)
		if err := nc.Publish(events.Subject("mvrefresher", status, schema, name), data); err != nil {
			t.Fatal(err)
		}
		nc.Publish("mvrefresher.slot.mvrefresher", []byte(`{"slot":"mvrefresher"}`)) // not a refresh event: ignored
	}

	watch := func(args ...string) (stdout *syncBuffer, stop func()) {
		stdout, stderr := &syncBuffer{}, &syncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, append([]string{"watch", "--nats-url", ns.URL()}, args...), stdout, stderr) }()
		waitUntil(t, "watch to subscribe", func() bool { return strings.Contains(stderr.String(), "watching") })
		return stdout, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("watch: %v", err)
			}
		}
	}

	// A late subscriber sees the latest event of every view first.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: events.LatestBucket("MVREFRESHER")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), events.LatestKey("analytics", "mv_old"),
		[]byte(`{"view":"analytics.mv_old","status":"ok","reason":"startup","changes":0}`)); err != nil {
		t.Fatal(err)
	}

	all, stopAll := watch()
	waitUntil(t, "the latest event", func() bool { return strings.Contains(all.String(), "analytics.mv_old") })
	asJSON, stopJSON := watch("--json")
	one, stopOne := watch("--view", `analytics."Mixed Case"`)
	publish("analytics.mv_revenue_summary", "analytics", "mv_revenue_summary", events.StatusOK)
	publish(`analytics."Mixed Case"`, "analytics", "Mixed Case", events.StatusFailed)
	publish("other.mv_x", "other", "mv_x", events.StatusOK)
	waitUntil(t, "the latest event and three live ones", func() bool {
		return strings.Count(all.String(), "\n") == 4 && strings.Count(asJSON.String(), "\n") == 4
	})
	waitUntil(t, "the filtered event", func() bool { return strings.Count(one.String(), "\n") == 1 })
	stopAll()
	stopJSON()
	stopOne()

	if out := all.String(); !strings.Contains(out, "analytics.mv_revenue_summary") || !strings.Contains(out, "+1/-1") ||
		!strings.Contains(out, "3 changes, staleness 1.5s") || !strings.Contains(out, "division by zero") {
		t.Errorf("readable output:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(asJSON.String()), "\n") {
		var e events.Refresh
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.View == "" {
			t.Errorf("--json line %q: %v", line, err)
		}
	}
	if out := one.String(); !strings.Contains(out, `analytics."Mixed Case"`) || strings.Contains(out, "mv_revenue") || strings.Contains(out, "mv_old") {
		t.Errorf("--view output:\n%s", out)
	}
}

// TestWatch_SubjectPrefix: watch reads nats.subject_prefix like the daemon,
// from --config, the environment or --nats-subject-prefix, and still takes
// the deprecated --subject-prefix.
func TestWatch_SubjectPrefix(t *testing.T) {
	ns, err := localnats.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	config := filepath.Join(t.TempDir(), "mvrefresher.yaml")
	if err := os.WriteFile(config, []byte("nats:\n  url: "+ns.URL()+"\n  subject_prefix: from.file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"--config", config}, "from.file"},
		{[]string{"--config", config, "--nats-subject-prefix", "from.flag"}, "from.flag"},
		{[]string{"--nats-url", ns.URL(), "--subject-prefix", "old.spelling"}, "old.spelling"},
	} {
		stdout, stderr := &syncBuffer{}, &syncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, append([]string{"watch"}, c.args...), stdout, stderr) }()
		waitUntil(t, "watch to subscribe", func() bool { return strings.Contains(stderr.String(), "watching") })
		data, _ := json.Marshal(events.Refresh{View: "app.v", Status: events.StatusOK, Reason: events.ReasonChange, FinishedAt: time.Now()})
		for _, prefix := range []string{"mvrefresher", c.prefix} {
			if err := nc.Publish(events.Subject(prefix, events.StatusOK, "app", "v"), data); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, "the event under "+c.prefix, func() bool { return strings.Contains(stdout.String(), "app.v") })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch %v: %v", c.args, err)
		}
		if n := strings.Count(stdout.String(), "app.v"); n != 1 || !strings.Contains(stderr.String(), "watching "+c.prefix+".*.>") {
			t.Errorf("watch %v: %d events, want the one under %s only:\n%s\n%s", c.args, n, c.prefix, stdout.String(), stderr.String())
		}
	}
}
