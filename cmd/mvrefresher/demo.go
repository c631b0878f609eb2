package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/replication"
)

//go:embed demo_schema.sql
var demoSchema string

const demoName = "mvrefresher_demo"

// demoIncremental is the demo's view maintained incrementally.
const demoIncremental = "analytics.mv_daily_activity"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("demo", stdout, stderr)
	duration := fs.Duration("duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	keep := fs.Bool("keep", false, "with --duration: stop only the traffic then, and keep PostgreSQL, NATS and the daemon running until Ctrl-C, for exploring")
	listen := fs.String("listen", "127.0.0.1:9188", `serve /metrics, /healthz, /readyz and /views here ("" for none)`)
	databaseURL := fs.String("database-url", "", "use this PostgreSQL (wal_level=logical) instead of a throwaway local one; the demo creates schemas core and analytics there and drops them afterwards")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mvrefresher demo: unexpected argument %q\n", fs.Arg(0))
		return exitError{2}
	}
	if *keep && *duration <= 0 {
		fmt.Fprintln(stderr, "mvrefresher demo: --keep needs --duration: the traffic stops after --duration, the rest keeps running until Ctrl-C")
		return exitError{2}
	}
	// The traffic stops at trafficEnd; without --keep, so does everything.
	var trafficEnd time.Time
	if *duration > 0 {
		trafficEnd = time.Now().Add(*duration)
	}
	if *duration > 0 && !*keep {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, trafficEnd)
		defer cancel()
	}
	// The NATS callback, the traffic and this goroutine all print.
	stdout = &lockedWriter{w: stdout}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	// The daemon's own log shows problems only; the demo prints its events.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	dbURL, cleanupDB, err := demoDatabase(ctx, *databaseURL, say)
	if err != nil {
		return err
	}
	defer cleanupDB()
	ns, err := localnats.Start()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer ns.Shutdown()

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("demo: connect: %w", err)
	}
	defer pool.Close()
	if err := replication.CheckWALLevel(ctx, pool); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	say("creating the seed's schema: core.fact_events (partitioned, 20,000 events) and six analytics views")
	if err := createDemoSchema(ctx, pool, *databaseURL != ""); err != nil {
		return err
	}
	if *databaseURL != "" {
		defer dropDemoObjects(pool, say)
	}

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		return fmt.Errorf("demo: connect to NATS: %w", err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe(demoName+".>", func(m *nats.Msg) {
		if m.Subject == events.SlotSubject(demoName, demoName) {
			var sl events.Slot
			if err := json.Unmarshal(m.Data, &sl); err == nil {
				say("-- slot %s: confirmed %s, %d bytes behind the WAL, %d views pending", sl.Slot, sl.ConfirmedFlushLSN, sl.LagBytes, sl.PendingViews)
			}
			return
		}
		var e events.Refresh
		if err := json.Unmarshal(m.Data, &e); err == nil {
			printEvent(stdout, e)
		}
	})
	if err != nil {
		return fmt.Errorf("demo: subscribe: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes right after

	cfg := config.Default()
	cfg.DatabaseURL = dbURL
	cfg.Slot, cfg.Publication = demoName, demoName
	cfg.Schemas = []string{"analytics"}
	cfg.RefreshLogTable = config.TableName{Schema: "analytics", Name: "mv_refresh_log"}
	cfg.Debounce, cfg.MaxWait = time.Second, 5*time.Second
	// One view maintained incrementally: its lines say how many groups
	// each maintenance recomputed.
	incremental := true
	cfg.Views = map[string]config.View{demoIncremental: {Incremental: &incremental}}
	cfg.Listen = *listen
	cfg.NATS.URL, cfg.NATS.SubjectPrefix = ns.URL(), demoName
	// The slot's health every few seconds: it follows the WAL when idle.
	cfg.SlotCheckInterval = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	d := daemon.New(cfg, logger)
	runDaemon := func(ctx context.Context) error { return d.Run(ctx) }
	addr := ""
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("demo: listen on %s (another mvrefresher? pass --listen 127.0.0.1:0, or --listen '' for none): %w", *listen, err)
		}
		addr = "http://" + ln.Addr().String()
		runDaemon = func(ctx context.Context) error { return serveOn(ctx, d, ln, logger) }
		say("serving %s/metrics (Prometheus) and %s/views (each view's freshness)", addr, addr)
	}
	printDemoCommands(say, cfg, addr)
	if *keep {
		say("--keep: the traffic stops after %s; PostgreSQL, NATS and the daemon keep running until Ctrl-C", *duration)
	}
	say("starting mvrefresher (debounce 1s, max wait 5s); events arrive on NATS subject %s.>", demoName)
	say("first start: every view is refreshed once (reason startup), then only what changes")
	say("%s is maintained incrementally (incremental: true): a table whose changed groups alone are recomputed", demoIncremental)
	say("%-12s  %-6s  %-34s  %-7s  %9s  %-13s  %s", "time", "status", "view", "reason", "duration", "rows +/-", "changes, staleness")

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	daemonErr := make(chan error, 1)
	wg.Go(func() { daemonErr <- runDaemon(runCtx) })
	wg.Go(func() {
		trafficCtx := runCtx
		if *keep {
			var stopTraffic context.CancelFunc
			trafficCtx, stopTraffic = context.WithDeadline(runCtx, trafficEnd)
			defer stopTraffic()
		}
		if err := demoTraffic(trafficCtx, pool, say); err != nil && trafficCtx.Err() == nil {
			logger.Error("demo traffic", "error", err)
		}
		if *keep && runCtx.Err() == nil {
			say("-- traffic stopped; PostgreSQL, NATS and the daemon keep running for the commands above: Ctrl-C stops and removes them")
		}
	})

	select {
	case <-ctx.Done():
	case err = <-daemonErr:
		daemonErr <- err
	}
	say("stopping")
	stopRun()
	wg.Wait()
	if err := <-daemonErr; err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("demo: flush NATS: %w", err)
	}
	return nil
}

// printDemoCommands prints the command lines that find the demo's
// database, slot, refresh log, NATS and HTTP address (addr,
// "" when it serves none). Flags rather than a config file: a
// DATABASE_URL in the environment would override the file's.
func printDemoCommands(say func(string, ...any), cfg config.Config, addr string) {
	// Each command takes the flags of the keys it reads.
	db := fmt.Sprintf("--database-url %s", shellQuote(cfg.DatabaseURL))
	views := fmt.Sprintf("%s --schemas %s --refresh-log-table %s", db, strings.Join(cfg.Schemas, ","), cfg.RefreshLogTable)
	say("from another terminal (`go install ./cmd/mvrefresher` first, or go run ./cmd/mvrefresher in place of mvrefresher):")
	say("  mvrefresher status %s --slot %s", views, cfg.Slot)
	say("  mvrefresher explain %s --debounce %s --max-wait %s core.fact_events", views, cfg.Debounce, cfg.MaxWait)
	say("  mvrefresher graph %s --format mermaid", views)
	say("  mvrefresher verify %s", views)
	say("  mvrefresher watch --nats-url %s --nats-subject-prefix %s", cfg.NATS.URL, cfg.NATS.SubjectPrefix)
	say("  psql %s   (write to core.fact_events: the views follow)", shellQuote(cfg.DatabaseURL))
	if addr != "" {
		say("  mvrefresher refresh --url %s %s --wait analytics.mv_revenue_summary", addr, db)
		say("  mvrefresher wait --url %s %s --view analytics.mv_revenue_summary", addr, db)
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoDatabase returns the URL of the demo's database: a new throwaway
// cluster, or the given server.
func demoDatabase(ctx context.Context, url string, say func(string, ...any)) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	say("starting a throwaway PostgreSQL (initdb into a temporary directory, wal_level=logical)")
	cluster, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		return "", nil, fmt.Errorf("demo: %w", err)
	}
	stop := func() {
		if err := cluster.Stop(context.Background()); err != nil {
			say("stopping PostgreSQL: %v", err)
		}
	}
	return cluster.URL("postgres"), stop, nil
}

func createDemoSchema(ctx context.Context, pool *pgxpool.Pool, shared bool) error {
	if shared {
		var taken bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname IN ('core', 'analytics'))
			OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
			OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, demoName).Scan(&taken)
		if err != nil {
			return fmt.Errorf("demo: inspect database: %w", err)
		}
		if taken {
			return fmt.Errorf("demo: schema core or analytics, or slot/publication %s, already exists in that database: the demo does not touch existing objects", demoName)
		}
	}
	if _, err := pool.Exec(ctx, demoSchema); err != nil {
		return fmt.Errorf("demo: create schema: %w", err)
	}
	return nil
}

// dropDemoObjects removes what the demo created in a database it did not
// create itself.
func dropDemoObjects(pool *pgxpool.Pool, say func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The walsender lets go of the slot a moment after the daemon closes.
	for {
		_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, demoName)
		var active bool
		if err == nil {
			err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, demoName).Scan(&active)
		}
		if err != nil || !active {
			if err != nil {
				say("dropping replication slot %s: %v", demoName, err)
			}
			break
		}
		select {
		case <-ctx.Done():
			say("replication slot %s is still active: drop it with SELECT pg_drop_replication_slot('%s')", demoName, demoName)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{demoName}.Sanitize()+"; DROP SCHEMA IF EXISTS analytics, core CASCADE"); err != nil {
		say("dropping the demo's schemas: %v", err)
	}
}

// demoTraffic writes bursts of small transactions with pauses between them,
// and now and then a write no view reads.
func demoTraffic(ctx context.Context, pool *pgxpool.Pool, say func(string, ...any)) error {
	if !wait.For(ctx, 4*time.Second) { // let the startup refreshes show first
		return nil
	}
	types := []string{"visit", "visit", "signup", "activate", "purchase"}
	for round := 1; ; round++ {
		if round%4 == 0 {
			say("-- writing to core.audit_log, which no view reads: nothing should refresh")
			if _, err := pool.Exec(ctx, "INSERT INTO core.audit_log (note) VALUES ('demo')"); err != nil {
				return err
			}
		} else {
			n := 20 + rand.IntN(41)
			say("-- burst: %d transactions into core.fact_events within a second", n)
			for range n {
				t := types[rand.IntN(len(types))]
				amount := 0.0
				if t == "purchase" {
					amount = float64(rand.IntN(9000))/100 + 1
				}
				var experiment, variant *string
				if rand.IntN(3) == 0 {
					e, v := "checkout_v2", []string{"control", "treatment"}[rand.IntN(2)]
					experiment, variant = &e, &v
				}
				_, err := pool.Exec(ctx, `INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
					VALUES (now(), $1, $2, $3, $4, $5, $6)`, rand.IntN(500), rand.Int64N(1_000_000), t, experiment, variant, amount)
				if err != nil {
					return err
				}
				if !wait.For(ctx, time.Duration(rand.IntN(40))*time.Millisecond) {
					return nil
				}
			}
		}
		if !wait.For(ctx, time.Duration(5+rand.IntN(5))*time.Second) {
			return nil
		}
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
