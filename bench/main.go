// Command bench measures mvrefresher against the alternatives it claims to
// beat. It starts its own throwaway PostgreSQL, runs each scenario several
// times and prints a Markdown table (median, min, max); -json FILE also
// writes the raw runs. See bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/refresher"
)

type result struct {
	Scenario string  `json:"scenario"`
	Tool     string  `json:"tool"`
	Run      int     `json:"run"`
	Changes  int64   `json:"changes"`
	WallSec  float64 `json:"wall_seconds"`
	CPUSec   float64 `json:"cpu_seconds"`
}

func (r result) changesPerSec() float64 { return float64(r.Changes) / r.WallSec }
func (r result) cpuPerMillion() float64 { return r.CPUSec / float64(r.Changes) * 1e6 }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	runs := fs.Int("runs", 3, "runs per scenario and tool")
	bulkTxns := fs.Int("bulk-txns", 600, "drain: transactions of -bulk-rows rows each")
	bulkRows := fs.Int("bulk-rows", 1000, "drain: rows per bulk transaction")
	singles := fs.Int("singles", 5000, "drain: single-row transactions")
	drainMaintained := fs.Bool("drain-maintained", false, "drain: the view is maintained incrementally (incremental: true, an index on its bucket column)")
	latCommits := fs.Int("latency-commits", 500, "latency: single-row commits")
	latRate := fs.Float64("latency-rate", 20, "latency: commits per second")
	vsRows := fs.Int("versus-rows", 2_000_000, "versus: rows in the fact table")
	vsMinutes := fs.Float64("versus-minutes", 20, "versus: simulated minutes of traffic (the pattern stretches with it)")
	vsCompress := fs.Float64("compress", 20, "versus: simulated time runs this many times faster than real time (traffic, timer period, debounce and max_wait)")
	vsTimer := fs.Duration("versus-period", 5*time.Minute, "versus: the timer's period, in simulated time")
	vsMaxWait := fs.Duration("versus-max-wait", config.Default().MaxWait, "versus: mvrefresher's max_wait, in simulated time")
	vsMaxStaleness := fs.Duration("versus-max-staleness", 0, "versus: mvrefresher's max_staleness, in simulated time (0: none)")
	vsStrategies := fs.String("versus-strategies", "timer,per-commit,mvrefresher", "versus: strategies to run, comma-separated")
	vsViews := fs.String("versus-views", "seed", "versus: seed (the seed's four views) or maintained (the incremental scenario's five dashboard views, maintained incrementally by mvrefresher)")
	scViews := fs.Int("scale-views", 1000, "scale: managed materialized views")
	scTables := fs.Int("scale-tables", 200, "scale: source tables")
	scChanges := fs.Int("scale-changes", 1_000_000, "scale: row changes written while the daemon is stopped")
	scLog := fs.String("scale-log", "", "scale: append the daemon's stderr to this file")
	wpSeconds := fs.Int("writepath-seconds", 15, "writepath: pgbench -T of each round")
	wpClients := fs.Int("writepath-clients", 2, "writepath: pgbench -c and -j")
	wpScale := fs.Int("writepath-scale", 5, "writepath: pgbench -i -s")
	wpModes := fs.String("writepath-modes", "none,recvlogical,primary,standby,timer", "writepath: consumers to compare, comma-separated")
	wpWorkloads := fs.String("writepath-workloads", "tpcb,unrelated", "writepath: tpcb (the views read pgbench's tables) and unrelated (they read a table pgbench never writes)")
	wpDebounce := fs.Duration("writepath-debounce", 2*time.Second, "writepath: the daemon's debounce")
	wpMaxWait := fs.Duration("writepath-max-wait", 10*time.Second, "writepath: the daemon's max_wait, and the timer's period")
	memViews := fs.Int("memory-views", 200, "memory: materialized views over the one table")
	memBacklog := fs.Int("memory-backlog", 2_000_000, "memory: single-row transactions written while the daemon is stopped")
	memRate := fs.Int("memory-rate", 10_000, "memory: transactions per second once caught up")
	memSeconds := fs.Int("memory-seconds", 60, "memory: for this long")
	memBuilds := fs.String("memory-builds", "this=.", "memory: daemons to compare, label=checkout directory, comma-separated")
	memLog := fs.String("memory-log", "", "memory: append the daemons' stderr to this file")
	incSingles := fs.Int("incremental-batches", 50, "incremental: one-row batches")
	incRefreshes := fs.Int("incremental-refreshes", 3, "incremental: concurrent refreshes of each twin during the one-row batches")
	incBulks := fs.Int("incremental-bulks", 3, "incremental: batches of -incremental-bulk-rows rows on one day")
	incBulkRows := fs.Int("incremental-bulk-rows", 1000, "incremental: rows per bulk batch")
	jsonOut := fs.String("json", "", "also write the raw runs to this file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (daemon included) to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	// Flags may also follow the scenario: go run ./bench latency -runs 1.
	scenario := "drain"
	if fs.NArg() > 0 {
		scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	settings := map[string]string{"max_wal_size": "8GB", "checkpoint_timeout": "30min", "shared_buffers": "512MB"}
	switch scenario {
	case "drain", "memory":
	case "incremental":
		// The server's own time per statement, planning included.
		settings["shared_preload_libraries"] = "pg_stat_statements"
		settings["pg_stat_statements.track_planning"] = "on"
	case "latency", "versus", "scale", "writepath":
		// localpg turns synchronous_commit off for speed; then a commit
		// returns before its WAL is flushed, and the walsender sends only
		// flushed WAL, up to wal_writer_delay (200 ms) later. That would
		// measure the walwriter, not the daemon.
		settings["synchronous_commit"] = "on"
	default:
		return fmt.Errorf("unknown scenario %q (available: drain, latency, versus, scale, writepath, memory, incremental)", scenario)
	}
	cluster, err := localpg.Start(ctx, localpg.Options{Settings: settings})
	if err != nil {
		return err
	}
	defer cluster.Stop(context.Background()) // best effort at exit
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var raw any
	switch scenario {
	case "drain":
		raw, err = runDrain(ctx, drain{cluster: cluster, bulkTxns: *bulkTxns, bulkRows: *bulkRows, singles: *singles,
			maintained: *drainMaintained, logger: logger}, *runs)
	case "latency":
		raw, err = runLatency(ctx, latency{cluster: cluster, commits: *latCommits, rate: *latRate, logger: logger}, *runs)
	case "versus":
		if *vsViews != "seed" && *vsViews != "maintained" {
			return fmt.Errorf("-versus-views: %q is neither seed nor maintained", *vsViews)
		}
		raw, err = runVersus(ctx, versus{cluster: cluster, rows: *vsRows, minutes: *vsMinutes, compress: *vsCompress,
			period: *vsTimer, maxWait: *vsMaxWait, maxStaleness: *vsMaxStaleness, strategies: strings.Split(*vsStrategies, ","),
			maintained: *vsViews == "maintained", logger: logger}, *runs)
	case "scale":
		raw, err = runScale(ctx, scale{cluster: cluster, views: *scViews, tables: *scTables, changes: *scChanges, logFile: *scLog}, *runs)
	case "memory":
		var builds []build
		if builds, err = parseBuilds(*memBuilds); err == nil {
			raw, err = runMemory(ctx, memory{cluster: cluster, views: *memViews, backlog: *memBacklog, rate: *memRate,
				seconds: *memSeconds, builds: builds, logFile: *memLog}, *runs)
		}
	case "incremental":
		raw, err = runIncremental(ctx, incremental{cluster: cluster, rows: *vsRows, singles: *incSingles, refreshes: *incRefreshes,
			bulks: *incBulks, bulkRows: *incBulkRows})
	case "writepath":
		raw, err = runWritepath(ctx, writepath{primary: cluster, seconds: *wpSeconds, clients: *wpClients, scale: *wpScale,
			debounce: *wpDebounce, maxWait: *wpMaxWait, modes: strings.Split(*wpModes, ","), workloads: strings.Split(*wpWorkloads, ",")}, *runs)
	}
	if err != nil {
		return err
	}
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(raw, "", "  ")
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func runDrain(ctx context.Context, d drain, runs int) ([]result, error) {
	var results []result
	for i := 1; i <= runs; i++ {
		rs, err := d.run(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("drain run %d: %w", i, err)
		}
		for _, r := range rs {
			fmt.Fprintf(os.Stderr, "run %d %-14s %8d changes in %6.2fs, %6.2f CPU-s\n", i, r.Tool, r.Changes, r.WallSec, r.CPUSec)
		}
		results = append(results, rs...)
	}
	printTable(results)
	return results, nil
}

func printTable(results []result) {
	byTool := map[string][]result{}
	var tools []string
	for _, r := range results {
		key := r.Scenario + " / " + r.Tool
		if _, ok := byTool[key]; !ok {
			tools = append(tools, key)
		}
		byTool[key] = append(byTool[key], r)
	}
	fmt.Println("| scenario / tool | runs | changes | wall s (median, min-max) | changes/s (median) | CPU-s per million changes (median, min-max) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, key := range tools {
		rs := byTool[key]
		wall := stats(rs, func(r result) float64 { return r.WallSec })
		rate := stats(rs, result.changesPerSec)
		cpu := stats(rs, result.cpuPerMillion)
		fmt.Printf("| %s | %d | %d | %.2f (%.2f-%.2f) | %.0f | %.2f (%.2f-%.2f) |\n",
			key, len(rs), rs[0].Changes, wall[0], wall[1], wall[2], rate[0], cpu[0], cpu[1], cpu[2])
	}
}

// stats returns median, min and max.
func stats(rs []result, f func(result) float64) [3]float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	return [3]float64{v[len(v)/2], v[0], v[len(v)-1]}
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }

var logWriter = os.Stderr

// ignoreMissing treats "relation does not exist" (not created yet) as no
// error.
func ignoreMissing(err error) error {
	if refresher.SQLState(err) == "42P01" {
		return nil
	}
	return err
}

// spread formats the median, min and max of values: "12.3 (11.0-14.2)".
func spread(values []float64, prec int) string {
	if len(values) == 0 {
		return "-"
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	if len(v) == 1 {
		return strconv.FormatFloat(v[0], 'f', prec, 64)
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	return f(v[len(v)/2]) + " (" + f(v[0]) + "-" + f(v[len(v)-1]) + ")"
}

// quantile is the q-quantile (0..1) of values by the nearest-rank method;
// values need not be sorted. NaN when empty.
func quantile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	rank := int(math.Ceil(q*float64(len(v)))) - 1
	return v[min(max(rank, 0), len(v)-1)]
}

// msOf is a duration in milliseconds.
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
