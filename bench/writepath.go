package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// writepath measures what a logical consumer costs the application's
// writes: pgbench on a primary pinned to CPU 0 (with pgbench), a physical
// standby always streaming and pinned to CPU 1 (with the consumer), in
// alternating rounds of each mode.
type writepath struct {
	primary   *localpg.Cluster
	seconds   int
	clients   int
	scale     int
	debounce  time.Duration
	maxWait   time.Duration
	modes     []string
	workloads []string
	logTo     io.Writer
}

// The consumers compared.
const (
	wpNone          = "no consumer"
	wpRecvlogical   = "pg_recvlogical"
	wpDaemonPrimary = "mvrefresher, decoding on the primary"
	wpDaemonStandby = "mvrefresher, decoding on the standby"
	wpTimerMode     = "timer"
)

var wpModeNames = map[string]string{"none": wpNone, "recvlogical": wpRecvlogical, "primary": wpDaemonPrimary, "standby": wpDaemonStandby, "timer": wpTimerMode}

// The workloads: pgbench's TPC-B-like transactions, read by the views
// ("tpcb"), or by none of them ("unrelated": the views read a table the
// application never writes).
var wpViews = map[string][]string{
	"tpcb": {
		`CREATE MATERIALIZED VIEW wp_tpcb.branch_balance AS SELECT bid, sum(abalance) AS balance, count(*) AS accounts FROM pgbench_accounts GROUP BY bid`,
		`CREATE UNIQUE INDEX ON wp_tpcb.branch_balance (bid)`,
		`CREATE MATERIALIZED VIEW wp_tpcb.teller_balance AS SELECT tid, bid, tbalance FROM pgbench_tellers`,
		`CREATE UNIQUE INDEX ON wp_tpcb.teller_balance (tid)`,
		`CREATE MATERIALIZED VIEW wp_tpcb.history_by_branch AS SELECT bid, count(*) AS n, sum(delta) AS delta FROM pgbench_history GROUP BY bid`,
		`CREATE UNIQUE INDEX ON wp_tpcb.history_by_branch (bid)`,
	},
	"unrelated": {
		`CREATE TABLE wp_unrelated.regions (id int PRIMARY KEY, name text, weight int)`,
		`INSERT INTO wp_unrelated.regions SELECT g, 'region ' || g, g % 7 FROM generate_series(1, 1000) g`,
		`CREATE MATERIALIZED VIEW wp_unrelated.region_weights AS SELECT weight, count(*) AS n FROM wp_unrelated.regions GROUP BY weight`,
		`CREATE UNIQUE INDEX ON wp_unrelated.region_weights (weight)`,
	},
}

var wpTables = map[string]string{
	"tpcb":      "pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history",
	"unrelated": "wp_unrelated.regions",
}

type writepathRun struct {
	Workload     string  `json:"workload"`
	Mode         string  `json:"mode"`
	Round        int     `json:"round"`
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed_transactions"`
	// CPU seconds during pgbench: the primary's logical walsenders, the
	// standby's, and the consumer's own process (the daemon or
	// pg_recvlogical; the timer's refreshes run in primary backends).
	PrimaryWalsenderCPU float64 `json:"primary_walsender_cpu_seconds"`
	StandbyWalsenderCPU float64 `json:"standby_walsender_cpu_seconds"`
	ConsumerCPU         float64 `json:"consumer_cpu_seconds"`
	Refreshes           int     `json:"refreshes"`
	// Staleness sampled every second during pgbench (tpcb, whose views'
	// sources change all the time): the age of the snapshot of each
	// view's last finished refresh. Null where nothing refreshes the views,
	// and for unrelated, whose views never go stale.
	StalenessMaxSec  *float64 `json:"staleness_max_seconds"`
	StalenessMeanSec *float64 `json:"staleness_mean_seconds"`
	// ViewsEqual: every view equals its definition once the consumer is
	// done (modes that refresh only).
	ViewsEqual *bool `json:"views_equal,omitempty"`
}

const wpDB = "writepath"

func runWritepath(ctx context.Context, w writepath, runs int) ([]writepathRun, error) {
	var version int
	if err := queryOn(ctx, w.primary, "postgres", "SELECT current_setting('server_version_num')::int", &version); err != nil {
		return nil, err
	}
	if version < 160000 {
		return nil, fmt.Errorf("writepath decodes on a standby, which needs PostgreSQL 16 or later; this is %d: run it with MVREFRESHER_TEST_PG_BIN=$(bash .ci/install-pg 16.14.0-beta.17)", version)
	}
	pgbench, err := clientTool("pgbench")
	if err != nil {
		return nil, err
	}
	recvlogical, err := clientTool("pg_recvlogical")
	if err != nil {
		return nil, err
	}
	bin, remove, err := buildDaemon(ctx, ".")
	if err != nil {
		return nil, err
	}
	defer remove()

	if err := w.primary.CreateDatabase(ctx, wpDB); err != nil {
		return nil, err
	}
	url := w.primary.URL(wpDB)
	if out, err := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(w.scale), url).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %w: %s", err, out)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	// pgbench_history has no key: the daemon would not publish it.
	setup := []string{"ALTER TABLE pgbench_history REPLICA IDENTITY FULL", "CREATE SCHEMA wp_tpcb", "CREATE SCHEMA wp_unrelated"}
	for _, wl := range w.workloads {
		setup = append(setup, wpViews[wl]...)
		setup = append(setup, fmt.Sprintf("CREATE PUBLICATION wp_recv_%s FOR TABLE %s", wl, wpTables[wl]))
	}
	for _, sql := range setup {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("%s: %w", sql, err)
		}
	}

	standby, err := w.primary.StartStandby(ctx, "standby1", localpg.Options{Settings: map[string]string{
		"hot_standby_feedback": "on", "wal_receiver_status_interval": "1s"}})
	if err != nil {
		return nil, err
	}
	defer standby.Stop(context.Background()) // best effort at exit
	if err := pinTree(postmasterPID(w.primary), 0); err != nil {
		return nil, err
	}
	if err := pinTree(postmasterPID(standby), 1); err != nil {
		return nil, err
	}
	if err := pinTree(os.Getpid(), 1); err != nil {
		return nil, err
	}
	env := wpEnv{writepath: w, standby: standby, conn: conn, bin: bin, pgbench: pgbench, recvlogical: recvlogical}

	var out []writepathRun
	for round := 1; round <= runs; round++ {
		for _, wl := range w.workloads {
			for i := range w.modes {
				// Each round starts one mode later, so none always runs
				// first or last.
				mode := w.modes[(i+round-1)%len(w.modes)]
				r, err := env.run(ctx, wl, mode, round)
				if err != nil {
					return nil, fmt.Errorf("writepath %s / %s, round %d: %w", wl, wpModeNames[mode], round, err)
				}
				fmt.Fprintf(os.Stderr, "round %d %-9s %-38s %7.0f TPS, walsender %.2f/%.2f CPU-s, consumer %.2f CPU-s, %d refreshes\n",
					round, wl, wpModeNames[mode], r.TPS, r.PrimaryWalsenderCPU, r.StandbyWalsenderCPU, r.ConsumerCPU, r.Refreshes)
				out = append(out, r)
			}
		}
	}
	printWritepath(out, w)
	return out, nil
}

type wpEnv struct {
	writepath
	standby                   *localpg.Cluster
	conn                      *pgx.Conn
	bin, pgbench, recvlogical string
}

// views lists the workload's materialized views.
func (e wpEnv) views(ctx context.Context, workload string) ([]string, error) {
	var views []string
	err := e.conn.QueryRow(ctx, `SELECT array_agg(format('%I.%I', schemaname, matviewname) ORDER BY matviewname)
		FROM pg_matviews WHERE schemaname = $1`, "wp_"+workload).Scan(&views)
	return views, err
}

func (e wpEnv) run(ctx context.Context, workload, mode string, round int) (writepathRun, error) {
	r := writepathRun{Workload: workload, Mode: wpModeNames[mode], Round: round}
	views, err := e.views(ctx, workload)
	if err != nil {
		return r, err
	}
	consumer, err := e.startConsumer(ctx, workload, mode, views)
	if err != nil {
		return r, err
	}
	defer consumer.stop() // stopped and checked below; this is for early returns

	// The same tables every round: pgbench updates pgbench_accounts, which
	// its own vacuum leaves out, and its bloat would slow every later
	// round. Then the consumer catches up on what that wrote.
	for _, sql := range []string{"VACUUM pgbench_accounts, pgbench_tellers, pgbench_branches", "TRUNCATE pgbench_history", "CHECKPOINT"} {
		if _, err := e.conn.Exec(ctx, sql); err != nil {
			return r, fmt.Errorf("%s: %w", sql, err)
		}
	}
	if consumer.daemon != nil {
		if err := consumer.settle(ctx); err != nil {
			return r, err
		}
	}
	if err := pinTree(postmasterPID(e.primary), 0); err != nil {
		return r, err
	}
	primaryWS, err := walsenderCPU(ctx, e.primary)
	if err != nil {
		return r, err
	}
	standbyWS, err := walsenderCPU(ctx, e.standby)
	if err != nil {
		return r, err
	}
	consumerCPU := consumer.cpu()
	refreshesBefore, err := consumer.refreshes(ctx)
	if err != nil {
		return r, err
	}

	sampling, stopSampling := context.WithCancel(ctx)
	var staleness []float64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if workload == "tpcb" {
			staleness = e.sampleStaleness(sampling, consumer, views)
		}
	}()
	cmd := exec.CommandContext(ctx, "taskset", "-c", "0", e.pgbench, "-n", "-c", strconv.Itoa(e.clients), "-j", strconv.Itoa(e.clients),
		"-T", strconv.Itoa(e.seconds), e.primary.URL(wpDB))
	output, err := cmd.CombinedOutput()
	stopSampling()
	<-sampled
	if err != nil {
		return r, fmt.Errorf("pgbench: %w: %s", err, output)
	}
	if err := parsePgbench(output, &r); err != nil {
		return r, err
	}
	if r.PrimaryWalsenderCPU, err = primaryWS.since(); err != nil {
		return r, err
	}
	if r.StandbyWalsenderCPU, err = standbyWS.since(); err != nil {
		return r, err
	}
	r.ConsumerCPU = consumer.cpu() - consumerCPU
	refreshesAfter, err := consumer.refreshes(ctx)
	if err != nil {
		return r, err
	}
	r.Refreshes = refreshesAfter - refreshesBefore
	if len(staleness) > 0 {
		sum, most := 0.0, 0.0
		for _, s := range staleness {
			sum, most = sum+s, max(most, s)
		}
		mean := sum / float64(len(staleness))
		r.StalenessMaxSec, r.StalenessMeanSec = &most, &mean
	}

	if consumer.refreshesViews() {
		if err := consumer.settle(ctx); err != nil {
			return r, err
		}
		equal := true
		for _, v := range views {
			var differing int64
			if err := e.conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM ((TABLE %[1]s EXCEPT ALL SELECT * FROM (%[2]s) d)
				UNION ALL (SELECT * FROM (%[2]s) d EXCEPT ALL TABLE %[1]s)) x`, v, definitionOf(ctx, e.conn, v))).Scan(&differing); err != nil {
				return r, err
			}
			if differing > 0 {
				fmt.Fprintf(os.Stderr, "%s differs from its definition in %d rows after %s\n", v, differing, r.Mode)
				equal = false
			}
		}
		r.ViewsEqual = &equal
	}
	return r, consumer.stop()
}

// definitionOf is a view's query, without its trailing semicolon.
func definitionOf(ctx context.Context, conn *pgx.Conn, view string) string {
	var def string
	_ = conn.QueryRow(ctx, "SELECT pg_get_viewdef($1::regclass)", view).Scan(&def)
	return strings.TrimSuffix(strings.TrimSpace(def), ";")
}

// sampleStaleness samples, every second until ctx ends, the age of each
// view's last finished refresh.
func (e wpEnv) sampleStaleness(ctx context.Context, c *wpConsumer, views []string) []float64 {
	var out []float64
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-ticker.C:
		}
		for _, v := range views {
			if at, ok := c.lastRefresh(ctx, v); ok {
				out = append(out, time.Since(at).Seconds())
			}
		}
	}
}

var (
	tpsLine    = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txnsLine   = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedLine = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

func parsePgbench(out []byte, r *writepathRun) error {
	m := tpsLine.FindSubmatch(out)
	n := txnsLine.FindSubmatch(out)
	if m == nil || n == nil {
		return fmt.Errorf("pgbench printed no tps: %s", out)
	}
	r.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	r.Transactions, _ = strconv.ParseInt(string(n[1]), 10, 64)
	if f := failedLine.FindSubmatch(out); f != nil {
		r.Failed, _ = strconv.ParseInt(string(f[1]), 10, 64)
	}
	return nil
}

// wpConsumer is one mode's consumer of the primary's writes.
type wpConsumer struct {
	mode    string
	conn    *pgx.Conn // the benchmark's connection to the primary
	daemon  *process
	slotOn  *localpg.Cluster // where the slot is: settle and teardown
	slot    string
	recv    *exec.Cmd
	timer   *wpTimer
	cleanup []string // SQL on slotOn once stopped
	stopped bool
}

func (e wpEnv) startConsumer(ctx context.Context, workload, mode string, views []string) (*wpConsumer, error) {
	c := &wpConsumer{mode: mode, conn: e.conn, slotOn: e.primary}
	switch mode {
	case "none":
	case "recvlogical":
		if _, err := e.conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('wp_recv', 'pgoutput')"); err != nil {
			return nil, err
		}
		c.slot, c.cleanup = "wp_recv", []string{"SELECT pg_drop_replication_slot('wp_recv')"}
		c.recv = exec.Command("taskset", "-c", "1", e.recvlogical, "-d", e.primary.URL(wpDB), "--slot", "wp_recv", "--start",
			"-o", "proto_version=1", "-o", "publication_names=wp_recv_"+workload, "-f", "/dev/null")
		if err := c.recv.Start(); err != nil {
			return nil, err
		}
		if err := awaitSlotActive(ctx, e.primary, "wp_recv"); err != nil {
			return c, err
		}
	case "primary", "standby":
		args := []string{"--database-url", e.primary.URL(wpDB), "--schemas", "wp_" + workload,
			"--slot", "wp_daemon", "--publication", "wp_daemon", "--debounce", e.debounce.String(), "--max-wait", e.maxWait.String(), "--nats-url", ""}
		if mode == "standby" {
			args = append(args, "--replication-url", e.standby.URL(wpDB))
			c.slotOn = e.standby
		}
		c.slot, c.cleanup = "wp_daemon", []string{"SELECT pg_drop_replication_slot('wp_daemon')"}
		d, err := startCommand(ctx, []string{"taskset", "-c", "1"}, e.bin, args, e.logTo)
		if err != nil {
			return nil, err
		}
		c.daemon = d
		if _, err := d.waitReady(ctx, 2*time.Minute); err != nil {
			return c, d.fail(err)
		}
		// The startup refreshes are done before pgbench starts.
		if err := c.settle(ctx); err != nil {
			return c, d.fail(err)
		}
	case "timer":
		t, err := startTimer(ctx, e.primary.URL(wpDB), views, e.maxWait)
		if err != nil {
			return nil, err
		}
		c.timer = t
	default:
		return nil, fmt.Errorf("unknown writepath mode %q (available: none, recvlogical, primary, standby, timer)", mode)
	}
	return c, nil
}

func (c *wpConsumer) refreshesViews() bool { return c.daemon != nil || c.timer != nil }

// settle waits until the daemon's slot has confirmed the primary's current
// WAL position: every change up to it is refreshed.
func (c *wpConsumer) settle(ctx context.Context) error {
	if c.timer != nil {
		return c.timer.stop()
	}
	if _, err := c.conn.Exec(ctx, "SELECT pg_logical_emit_message(false, 'bench', 'settle')"); err != nil {
		return err
	}
	var target pglogrepl.LSN
	if err := c.conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()").Scan(&target); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var confirmed *pglogrepl.LSN
		err := queryOn(ctx, c.slotOn, wpDB, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'wp_daemon'", &confirmed)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if confirmed != nil && *confirmed >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon's slot did not confirm %s within 2 minutes", target)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *wpConsumer) cpu() float64 {
	switch {
	case c.daemon != nil:
		return c.daemon.cpu()
	case c.recv != nil:
		return procTotalCPU(c.recv.Process.Pid)
	}
	return 0
}

// refreshes counts the refreshes so far.
func (c *wpConsumer) refreshes(ctx context.Context) (int, error) {
	switch {
	case c.timer != nil:
		return c.timer.count(), nil
	case c.daemon != nil:
		var n *int64
		err := c.conn.QueryRow(ctx, "SELECT sum(refresh_count) FROM public.mv_refresh_log").Scan(&n)
		if n == nil {
			return 0, ignoreMissing(err)
		}
		return int(*n), err
	}
	return 0, nil
}

// lastRefresh is when the last finished refresh of view started.
func (c *wpConsumer) lastRefresh(ctx context.Context, view string) (time.Time, bool) {
	switch {
	case c.timer != nil:
		return c.timer.last(view)
	case c.daemon != nil:
		var at time.Time
		err := c.conn.QueryRow(ctx, "SELECT attempted_at FROM public.mv_refresh_log WHERE mv_name = $1 AND status = 'ok'", view).Scan(&at)
		return at, err == nil
	}
	// Sampled all the same, so that every mode costs the primary the same
	// queries.
	_, _ = c.conn.Exec(ctx, "SELECT 1 FROM pg_class LIMIT 0")
	return time.Time{}, false
}

func (c *wpConsumer) stop() error {
	if c.stopped {
		return nil
	}
	c.stopped = true
	var errs []error
	if c.daemon != nil {
		errs = append(errs, c.daemon.stop())
	}
	if c.recv != nil {
		_ = c.recv.Process.Kill()
		_ = c.recv.Wait()
	}
	if c.timer != nil {
		errs = append(errs, c.timer.stop())
	}
	ctx := context.Background()
	if c.slot != "" {
		if err := awaitSlotInactive(ctx, c.slotOn, c.slot); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sql := range c.cleanup {
		var ignored any
		errs = append(errs, queryOn(ctx, c.slotOn, wpDB, sql, &ignored))
	}
	if c.daemon != nil {
		_, err := c.conn.Exec(ctx, "DROP PUBLICATION IF EXISTS wp_daemon; TRUNCATE public.mv_refresh_log")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// wpTimer refreshes every view every period, as pg_cron would.
type wpTimer struct {
	mu       sync.Mutex
	lastAt   map[string]time.Time
	n        int
	err      error
	cancel   context.CancelFunc
	done     chan struct{}
	url      string
	views    []string
	finished bool
}

// startTimer refreshes every view once, as a timer that has been running
// would have, and then every period.
func startTimer(ctx context.Context, url string, views []string, period time.Duration) (*wpTimer, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	t := &wpTimer{lastAt: map[string]time.Time{}, done: make(chan struct{}), url: url, views: views}
	if err := t.refreshAll(ctx, conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go func() {
		defer close(t.done)
		defer conn.Close(context.Background())
		ticker := time.NewTicker(period)
		defer ticker.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-ticker.C:
			}
			if err := t.refreshAll(runCtx, conn); err != nil && runCtx.Err() == nil {
				t.fail(err)
				return
			}
		}
	}()
	return t, nil
}

func (t *wpTimer) refreshAll(ctx context.Context, conn *pgx.Conn) error {
	for _, v := range t.views {
		at := time.Now()
		if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY "+v); err != nil {
			return fmt.Errorf("timer: refresh %s: %w", v, err)
		}
		t.mu.Lock()
		t.lastAt[v], t.n = at, t.n+1
		t.mu.Unlock()
	}
	return nil
}

func (t *wpTimer) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.err = err
}

func (t *wpTimer) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *wpTimer) last(view string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.lastAt[view]
	return at, ok
}

// stop ends the timer with one last refresh of every view, so that the
// views' check compares a refresh with its definition.
func (t *wpTimer) stop() error {
	if t.finished {
		return nil
	}
	t.finished = true
	t.cancel()
	<-t.done
	if t.err != nil {
		return t.err
	}
	conn, err := pgx.Connect(context.Background(), t.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return t.refreshAll(context.Background(), conn)
}

// cpuOfWalsenders follows the CPU time of a server's logical walsenders.
type cpuOfWalsenders struct {
	cluster *localpg.Cluster
	start   map[int]float64
}

func walsenderCPU(ctx context.Context, c *localpg.Cluster) (cpuOfWalsenders, error) {
	pids, err := logicalWalsenders(ctx, c)
	w := cpuOfWalsenders{cluster: c, start: map[int]float64{}}
	for _, pid := range pids {
		w.start[pid] = procTotalCPU(pid)
	}
	return w, err
}

// since is the CPU the walsenders seen at the start used since; one that
// started meanwhile (a reconnect) counts from zero.
func (w cpuOfWalsenders) since() (float64, error) {
	pids, err := logicalWalsenders(context.Background(), w.cluster)
	total := 0.0
	for _, pid := range pids {
		total += procTotalCPU(pid) - w.start[pid]
	}
	return total, err
}

func logicalWalsenders(ctx context.Context, c *localpg.Cluster) ([]int, error) {
	var pids []int
	// A logical walsender is connected to a database; a physical one is not.
	err := queryOn(ctx, c, wpDB, `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity
		WHERE backend_type = 'walsender' AND datname IS NOT NULL`, &pids)
	return pids, err
}

// queryOn runs one query on a connection of its own to database db of c.
func queryOn(ctx context.Context, c *localpg.Cluster, db, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

func awaitSlotActive(ctx context.Context, c *localpg.Cluster, slot string) error {
	return awaitSlot(ctx, c, slot, true)
}

func awaitSlotInactive(ctx context.Context, c *localpg.Cluster, slot string) error {
	return awaitSlot(ctx, c, slot, false)
}

func awaitSlot(ctx context.Context, c *localpg.Cluster, slot string, active bool) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var is bool
		err := queryOn(ctx, c, wpDB, "SELECT active FROM pg_replication_slots WHERE slot_name = '"+slot+"'", &is)
		if errors.Is(err, pgx.ErrNoRows) {
			is, err = false, nil
		}
		if err != nil {
			return err
		}
		if is == active {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s: active is not %v after a minute", slot, active)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientTool finds a PostgreSQL client program: on PATH, or in Debian's
// /usr/lib/postgresql/*/bin (the npm server builds have none).
func clientTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(found) == 0 {
		return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql-client)", name)
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// postmasterPID reads the first line of the cluster's postmaster.pid.
func postmasterPID(c *localpg.Cluster) int {
	data, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(bytes.SplitN(data, []byte("\n"), 2)[0])))
	return pid
}

// pinTree pins a process, its threads and its descendants to cpu
// (taskset): forked children inherit it.
func pinTree(root, cpu int) error {
	if root <= 0 {
		return errors.New("pin: no process")
	}
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		text := string(data)
		f := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], pid)
		}
	}
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[0]
		todo = append(todo[1:], children[pid]...)
		if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput(); err != nil && pid == root {
			return fmt.Errorf("taskset -p %d: %w: %s", pid, err, out)
		}
	}
	return nil
}

func printWritepath(rs []writepathRun, w writepath) {
	for _, wl := range w.workloads {
		fmt.Printf("\n%s: pgbench -c %d -j %d -T %d, scale %d; median (min-max) of %d rounds\n\n", wl, w.clients, w.clients, w.seconds, w.scale, len(rs)/len(w.workloads)/len(w.modes))
		fmt.Println("| consumer | TPS | / no consumer, same round | failed | primary logical walsender µs/txn | standby walsender µs/txn | consumer CPU-s | consumer / primary walsender | refreshes | staleness max s | views equal |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
		// Each run against the no-consumer run of its own round: the
		// machine's speed drifts more between rounds than within one.
		baseline := map[int]float64{}
		for _, r := range rs {
			if r.Workload == wl && r.Mode == wpNone {
				baseline[r.Round] = r.TPS
			}
		}
		for _, mode := range w.modes {
			var tps, vsNone, pws, sws, ccpu, ratio, refr, stale []float64
			failed, equal, checked := int64(0), 0, 0
			for _, r := range rs {
				if r.Workload != wl || r.Mode != wpModeNames[mode] {
					continue
				}
				tps = append(tps, r.TPS)
				if b := baseline[r.Round]; b > 0 {
					vsNone = append(vsNone, r.TPS/b)
				}
				pws = append(pws, r.PrimaryWalsenderCPU/float64(r.Transactions)*1e6)
				sws = append(sws, r.StandbyWalsenderCPU/float64(r.Transactions)*1e6)
				ccpu = append(ccpu, r.ConsumerCPU)
				if r.PrimaryWalsenderCPU > 0 {
					ratio = append(ratio, r.ConsumerCPU/r.PrimaryWalsenderCPU*100)
				}
				refr = append(refr, float64(r.Refreshes))
				if r.StalenessMaxSec != nil {
					stale = append(stale, *r.StalenessMaxSec)
				}
				failed += r.Failed
				if r.ViewsEqual != nil {
					checked++
					if *r.ViewsEqual {
						equal++
					}
				}
			}
			if len(tps) == 0 {
				continue
			}
			pct, views := "-", "-"
			if len(ratio) > 0 {
				pct = spread(ratio, 0) + "%"
			}
			if checked > 0 {
				views = fmt.Sprintf("%d/%d", equal, checked)
			}
			fmt.Printf("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", wpModeNames[mode], spread(tps, 0), spread(vsNone, 3), failed,
				spread(pws, 1), spread(sws, 1), spread(ccpu, 2), pct, spread(refr, 0), spread(stale, 1), views)
		}
	}
}
