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
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"

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
	jsonOut := fs.String("json", "", "also write the raw runs to this file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (daemon included) to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
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
	scenario := "drain"
	if fs.NArg() > 0 {
		scenario = fs.Arg(0)
	}
	if scenario != "drain" {
		return fmt.Errorf("unknown scenario %q (available: drain)", scenario)
	}
	cluster, err := localpg.Start(ctx, localpg.Options{Settings: map[string]string{
		"max_wal_size": "8GB", "checkpoint_timeout": "30min", "shared_buffers": "512MB",
	}})
	if err != nil {
		return err
	}
	defer cluster.Stop(context.Background()) //nolint:errcheck // best effort at exit
	d := drain{cluster: cluster, bulkTxns: *bulkTxns, bulkRows: *bulkRows, singles: *singles,
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var results []result
	for i := 1; i <= *runs; i++ {
		rs, err := d.run(ctx, i)
		if err != nil {
			return fmt.Errorf("drain run %d: %w", i, err)
		}
		for _, r := range rs {
			fmt.Fprintf(os.Stderr, "run %d %-14s %8d changes in %6.2fs, %6.2f CPU-s\n", i, r.Tool, r.Changes, r.WallSec, r.CPUSec)
		}
		results = append(results, rs...)
	}
	printTable(results)
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			return err
		}
	}
	return nil
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
