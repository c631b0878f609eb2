package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// latency: single-row commits at a steady rate on the source of a small
// view, debounce 0; for every commit, the time until the refresh that covers
// it starts and until its event reaches a NATS subscriber in this process.
type latency struct {
	cluster *localpg.Cluster
	commits int
	rate    float64
	logger  *slog.Logger
}

const latencySchema = `
CREATE SCHEMA core; CREATE SCHEMA analytics;
CREATE TABLE core.ticks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int NOT NULL, v int NOT NULL);
INSERT INTO core.ticks (k, v) SELECT g % 10, g FROM generate_series(1, 1000) g;
CREATE MATERIALIZED VIEW analytics.mv_ticks AS SELECT k, count(*) AS n, sum(v) AS total FROM core.ticks GROUP BY k;
CREATE UNIQUE INDEX ON analytics.mv_ticks (k);
ANALYZE core.ticks;`

// dist is a latency distribution in milliseconds.
type dist struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func distOf(v []float64) dist {
	return dist{quantile(v, 0.50), quantile(v, 0.95), quantile(v, 0.99), quantile(v, 1)}
}

type latencyRun struct {
	Run       int `json:"run"`
	Commits   int `json:"commits"`
	Refreshes int `json:"refreshes"`
	// Waited counts commits that returned while a refresh of the view was
	// running: they wait for it to finish, then for their own refresh.
	Waited        int     `json:"commits_that_waited_for_a_running_refresh"`
	RefreshMS     dist    `json:"refresh_duration"`
	ToStart       dist    `json:"commit_to_refresh_start"`
	ToEvent       dist    `json:"commit_to_event"`
	Overhead      dist    `json:"overhead"`
	OverheadNet   dist    `json:"overhead_net"`
	StartDelayNet dist    `json:"start_delay_net"`
	PublishDelay  dist    `json:"publish_delay"`
	WallSec       float64 `json:"wall_seconds"`
}

// received is an event and when this process got it.
type received struct {
	at  time.Time
	lsn pglogrepl.LSN
	e   events.Refresh
}

// collector subscribes to every refresh event of a daemon.
type collector struct {
	mu  sync.Mutex
	got []received
	sub *nats.Subscription
}

func collect(nc *nats.Conn, prefix string) (*collector, error) {
	c := &collector{}
	sub, err := nc.Subscribe(prefix+".*.>", func(m *nats.Msg) {
		at := time.Now()
		var e events.Refresh
		if err := json.Unmarshal(m.Data, &e); err != nil || e.View == "" {
			return // a slot event
		}
		lsn, _ := pglogrepl.ParseLSN(e.LSN)
		c.mu.Lock()
		c.got = append(c.got, received{at, lsn, e})
		c.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	c.sub = sub
	return c, nc.Flush()
}

func (c *collector) events() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.got...)
}

func (c *collector) reset() {
	c.mu.Lock()
	c.got = nil
	c.mu.Unlock()
}

// waitFor polls until cond holds for the events received so far.
func (c *collector) waitFor(ctx context.Context, timeout time.Duration, what string, cond func([]received) bool) error {
	deadline := time.Now().Add(timeout)
	for !cond(c.events()) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// startDaemon runs the daemon in this process; stop ends it gracefully.
func startDaemon(ctx context.Context, cfg config.Config, logger *slog.Logger) (stop func() error) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- daemon.New(cfg, logger).Run(runCtx) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
}

func runLatency(ctx context.Context, l latency, runs int) ([]latencyRun, error) {
	ns, err := localnats.Start()
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	var out []latencyRun
	for i := 1; i <= runs; i++ {
		r, err := l.run(ctx, ns, i)
		if err != nil {
			return nil, fmt.Errorf("latency run %d: %w", i, err)
		}
		fmt.Fprintf(os.Stderr, "run %d: %d commits, %d refreshes, commit-to-event p50 %.1f p99 %.1f ms, overhead p99 %.1f ms (net %.1f ms)\n",
			i, r.Commits, r.Refreshes, r.ToEvent.P50, r.ToEvent.P99, r.Overhead.P99, r.OverheadNet.P99)
		out = append(out, r)
	}
	printLatency(out)
	return out, nil
}

type commitSample struct {
	at  time.Time     // right after COMMIT returned
	lsn pglogrepl.LSN // WAL insert position after the row, before COMMIT: the commit ends after it, the previous commit before it
}

func (l latency) run(ctx context.Context, ns *localnats.Server, run int) (latencyRun, error) {
	db := fmt.Sprintf("latency_%d", run)
	if err := l.cluster.CreateDatabase(ctx, db); err != nil {
		return latencyRun{}, err
	}
	conn, err := pgx.Connect(ctx, l.cluster.URL(db))
	if err != nil {
		return latencyRun{}, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, latencySchema); err != nil {
		return latencyRun{}, err
	}
	// Slots belong to the cluster: drop this run's, or the next run's
	// daemon finds it taken by another database.
	defer conn.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()") // cleanup
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		return latencyRun{}, err
	}
	defer nc.Close()
	prefix := fmt.Sprintf("latency%d", run)
	col, err := collect(nc, prefix)
	if err != nil {
		return latencyRun{}, err
	}
	cfg := config.Default()
	cfg.DatabaseURL, cfg.Schemas, cfg.Listen, cfg.Debounce = l.cluster.URL(db), []string{"analytics"}, "", 0
	cfg.NATS.URL, cfg.NATS.SubjectPrefix = ns.URL(), prefix
	stop := startDaemon(ctx, cfg, l.logger)
	defer func() { _ = stop() }()
	if err := col.waitFor(ctx, time.Minute, "startup refresh", func(rs []received) bool { return len(rs) > 0 }); err != nil {
		return latencyRun{}, err
	}
	time.Sleep(500 * time.Millisecond)
	col.reset()

	fmt.Fprintf(logWriter, "run %d: %d single-row commits at %.0f/s\n", run, l.commits, l.rate)
	samples := make([]commitSample, 0, l.commits)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / l.rate)
	for i := range l.commits {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return latencyRun{}, err
		}
		var s commitSample
		if _, err := tx.Exec(ctx, "INSERT INTO core.ticks (k, v) VALUES ($1, $2)", i%10, i); err != nil {
			return latencyRun{}, err
		}
		if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&s.lsn); err != nil {
			return latencyRun{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return latencyRun{}, err
		}
		s.at = time.Now()
		samples = append(samples, s)
	}
	last := samples[len(samples)-1].lsn
	if err := col.waitFor(ctx, time.Minute, "event covering the last commit", func(rs []received) bool {
		return len(rs) > 0 && rs[len(rs)-1].lsn >= last
	}); err != nil {
		return latencyRun{}, err
	}
	wall := since(start)
	if err := stop(); err != nil {
		return latencyRun{}, err
	}
	return analyseLatency(run, samples, col.events(), wall)
}

func analyseLatency(run int, samples []commitSample, evs []received, wall float64) (latencyRun, error) {
	var refreshes []received
	for _, r := range evs {
		if r.e.Status == events.StatusOK {
			refreshes = append(refreshes, r)
		}
	}
	r := latencyRun{Run: run, Commits: len(samples), Refreshes: len(refreshes), WallSec: wall}
	var durs, toStart, toEvent, overhead, overheadNet, startNet, publish []float64
	for _, e := range refreshes {
		durs = append(durs, e.e.DurationMS)
	}
	j := 0
	for _, s := range samples {
		// The first refresh whose event says it covers the commit (events
		// of one view arrive in LSN order).
		for j < len(refreshes) && refreshes[j].lsn < s.lsn {
			j++
		}
		if j == len(refreshes) {
			return r, fmt.Errorf("commit at %s is covered by no event", s.lsn)
		}
		e := refreshes[j]
		// The part of a refresh already running when the commit returned,
		// which the commit had to wait for.
		var wait time.Duration
		if j > 0 {
			p := refreshes[j-1].e
			if !p.StartedAt.After(s.at) && p.FinishedAt.After(s.at) {
				wait = p.FinishedAt.Sub(s.at)
				r.Waited++
			}
		}
		dur := e.e.FinishedAt.Sub(e.e.StartedAt)
		toStart = append(toStart, msOf(e.e.StartedAt.Sub(s.at)))
		toEvent = append(toEvent, msOf(e.at.Sub(s.at)))
		overhead = append(overhead, msOf(e.at.Sub(s.at)-dur))
		overheadNet = append(overheadNet, msOf(e.at.Sub(s.at)-dur-wait))
		startNet = append(startNet, msOf(e.e.StartedAt.Sub(s.at)-wait))
		publish = append(publish, msOf(e.at.Sub(e.e.FinishedAt)))
	}
	r.RefreshMS, r.ToStart, r.ToEvent = distOf(durs), distOf(toStart), distOf(toEvent)
	r.Overhead, r.OverheadNet = distOf(overhead), distOf(overheadNet)
	r.StartDelayNet, r.PublishDelay = distOf(startNet), distOf(publish)
	return r, nil
}

func printLatency(rs []latencyRun) {
	fmt.Printf("latency: %d runs of %d single-row commits (median of the runs, min-max)\n\n", len(rs), rs[0].Commits)
	fmt.Println("| ms | p50 | p95 | p99 | max |")
	fmt.Println("|---|---|---|---|---|")
	row := func(name string, f func(latencyRun) dist) {
		var p50, p95, p99, mx []float64
		for _, r := range rs {
			d := f(r)
			p50, p95, p99, mx = append(p50, d.P50), append(p95, d.P95), append(p99, d.P99), append(mx, d.Max)
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", name, spread(p50, 1), spread(p95, 1), spread(p99, 1), spread(mx, 1))
	}
	row("commit → refresh start", func(r latencyRun) dist { return r.ToStart })
	row("commit → event received", func(r latencyRun) dist { return r.ToEvent })
	row("refresh duration (per refresh)", func(r latencyRun) dist { return r.RefreshMS })
	row("overhead: commit → event − own refresh", func(r latencyRun) dist { return r.Overhead })
	row("overhead net: also − running refresh waited for", func(r latencyRun) dist { return r.OverheadNet })
	row("  of which commit → start, net of waiting", func(r latencyRun) dist { return r.StartDelayNet })
	row("  of which refresh end → event received", func(r latencyRun) dist { return r.PublishDelay })
	var refreshes, waited []float64
	for _, r := range rs {
		refreshes = append(refreshes, float64(r.Refreshes))
		waited = append(waited, float64(r.Waited))
	}
	fmt.Printf("\nrefreshes per run: %s; commits that returned while a refresh ran: %s\n", spread(refreshes, 0), spread(waited, 0))
}
