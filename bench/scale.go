package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// scale: many tiny views over many tables, the real binary as a
// subprocess: how long discovery takes, how much memory it holds, and the
// CPU it spends per routed change.
type scale struct {
	cluster                *localpg.Cluster
	views, tables, changes int
	// logFile, when set, receives the daemon's log (and anything else it
	// writes to stderr, such as GODEBUG=gctrace=1 lines).
	logFile string
}

type scaleRun struct {
	Run     int `json:"run"`
	Views   int `json:"views"`
	Tables  int `json:"tables"`
	Changes int `json:"changes"`
	// First start: slot and publication created, every view queued for a
	// startup refresh; then until every view is in the refresh log.
	FirstReadySec       float64 `json:"first_start_ready_seconds"`
	FirstStartupDoneSec float64 `json:"first_start_startup_refreshes_done_seconds"`
	// Restart with every view in the log (nothing to refresh): exec until
	// the "starting" log line, and until /readyz answers 200.
	StartingSec float64 `json:"restart_starting_log_seconds"`
	ReadySec    float64 `json:"restart_ready_seconds"`
	RSSIdleMB   float64 `json:"restart_rss_idle_mb"`
	// The Go runtime's view at the same moment (from /metrics).
	HeapInuseMB    float64 `json:"restart_heap_inuse_mb"`
	HeapReleasedMB float64 `json:"restart_heap_released_mb"`
	GoSysMB        float64 `json:"restart_go_sys_mb"`
	// Start with a backlog of Changes row changes written while stopped.
	BacklogReadySec float64 `json:"backlog_start_ready_seconds"`
	RouteSec        float64 `json:"route_seconds"`            // ready until mvrefresher_wal_changes_total reaches Changes
	RouteCPUSec     float64 `json:"route_cpu_seconds"`        // the daemon's CPU over the same span
	RouteSysSec     float64 `json:"route_system_cpu_seconds"` // of which in the kernel
	DrainSec        float64 `json:"drain_seconds"`            // ready until the slot's confirmed position passes the backlog (views refreshed)
	DrainCPUSec     float64 `json:"drain_cpu_seconds"`
	RSSEndMB        float64 `json:"rss_end_mb"`
	HWMMB           float64 `json:"rss_peak_mb"` // VmHWM over the whole backlog start
}

// buildDaemon builds the mvrefresher binary of the checkout in dir into a
// temporary directory; remove removes it.
func buildDaemon(ctx context.Context, dir string) (bin string, remove func(), err error) {
	tmp, err := os.MkdirTemp("", "mvr-bench-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(tmp, "mvrefresher")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mvrefresher")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("go build ./cmd/mvrefresher in %s (run the benchmark from the repository root): %w: %s", dir, err, out)
	}
	return bin, func() { os.RemoveAll(tmp) }, nil
}

func runScale(ctx context.Context, s scale, runs int) ([]scaleRun, error) {
	bin, remove, err := buildDaemon(ctx, ".")
	if err != nil {
		return nil, err
	}
	defer remove()
	var out []scaleRun
	for i := 1; i <= runs; i++ {
		r, err := s.run(ctx, bin, i)
		if err != nil {
			return nil, fmt.Errorf("scale run %d: %w", i, err)
		}
		fmt.Fprintf(os.Stderr, "run %d: first start ready %.3fs (startup refreshes done %.1fs); restart ready %.3fs, RSS %.1f MB; %d changes routed in %.2fs, %.2f CPU-s; drained in %.2fs, %.2f CPU-s, peak RSS %.1f MB\n",
			i, r.FirstReadySec, r.FirstStartupDoneSec, r.ReadySec, r.RSSIdleMB, r.Changes, r.RouteSec, r.RouteCPUSec, r.DrainSec, r.DrainCPUSec, r.HWMMB)
		out = append(out, r)
	}
	printScale(out)
	return out, nil
}

func (s scale) schema() []string {
	var batches []string
	var b strings.Builder
	b.WriteString("CREATE SCHEMA src; CREATE SCHEMA mv;\n")
	for t := range s.tables {
		fmt.Fprintf(&b, "CREATE TABLE src.t_%03d (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int NOT NULL, v int NOT NULL);\n", t)
		fmt.Fprintf(&b, "INSERT INTO src.t_%03d (k, v) SELECT g %% 10, g FROM generate_series(1, 10) g;\n", t)
	}
	batches = append(batches, b.String())
	b.Reset()
	for v := range s.views {
		// Every fifth view reads two tables.
		from := fmt.Sprintf("src.t_%03d", v%s.tables)
		if v%5 == 0 {
			from = fmt.Sprintf("(SELECT k, v FROM src.t_%03d UNION ALL SELECT k, v FROM src.t_%03d) u", v%s.tables, (v/5+1)%s.tables)
		}
		fmt.Fprintf(&b, "CREATE MATERIALIZED VIEW mv.v_%04d AS SELECT k, count(*) AS n, sum(v) AS total FROM %s GROUP BY k;\n", v, from)
		fmt.Fprintf(&b, "CREATE UNIQUE INDEX ON mv.v_%04d (k);\n", v)
		if v%100 == 99 {
			batches = append(batches, b.String())
			b.Reset()
		}
	}
	return append(batches, b.String())
}

func (s scale) run(ctx context.Context, bin string, run int) (scaleRun, error) {
	r := scaleRun{Run: run, Views: s.views, Tables: s.tables, Changes: s.changes}
	var logTo io.Writer
	if s.logFile != "" {
		f, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return r, err
		}
		defer f.Close()
		logTo = f
	}
	db := fmt.Sprintf("scale_%d", run)
	if err := s.cluster.CreateDatabase(ctx, db); err != nil {
		return r, err
	}
	conn, err := pgx.Connect(ctx, s.cluster.URL(db))
	if err != nil {
		return r, err
	}
	defer conn.Close(context.Background())
	t0 := time.Now()
	for _, sql := range s.schema() {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return r, err
		}
	}
	fmt.Fprintf(logWriter, "run %d: created %d tables and %d views in %.1fs\n", run, s.tables, s.views, since(t0))
	defer conn.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()") // cleanup

	// First start: everything is created and every view refreshed once.
	d, err := startProcess(ctx, bin, s.cluster.URL(db), logTo)
	if err != nil {
		return r, err
	}
	if r.FirstReadySec, err = d.waitReady(ctx, 5*time.Minute); err != nil {
		return r, d.fail(err)
	}
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM public.mv_refresh_log WHERE lsn IS NOT NULL").Scan(&n)
		return n >= s.views, ignoreMissing(err)
	}); err != nil {
		return r, d.fail(err)
	}
	r.FirstStartupDoneSec = since(d.started)
	if err := d.stop(); err != nil {
		return r, err
	}

	// Restart: nothing to refresh.
	if d, err = startProcess(ctx, bin, s.cluster.URL(db), logTo); err != nil {
		return r, err
	}
	if r.ReadySec, err = d.waitReady(ctx, 5*time.Minute); err != nil {
		return r, d.fail(err)
	}
	r.StartingSec = d.startingAt().Sub(d.started).Seconds()
	time.Sleep(time.Second)
	r.RSSIdleMB, _ = d.memory()
	if m, err := d.metrics(); err == nil {
		r.HeapInuseMB, r.HeapReleasedMB, r.GoSysMB = m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_heap_released_bytes"]/(1<<20), m["go_memstats_sys_bytes"]/(1<<20)
	}
	if err := d.stop(); err != nil {
		return r, err
	}

	// A backlog written while it is stopped.
	fmt.Fprintf(logWriter, "run %d: writing %d row changes across %d tables\n", run, s.changes, s.tables)
	per := s.changes / s.tables
	for t := range s.tables {
		for done := 0; done < per; done += 5000 {
			n := min(5000, per-done)
			if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO src.t_%03d (k, v) SELECT g %% 10, g FROM generate_series(1, $1) g", t), n); err != nil {
				return r, err
			}
		}
	}
	changes := float64(per * s.tables)
	r.Changes = per * s.tables
	var target pglogrepl.LSN
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&target); err != nil {
		return r, err
	}
	if d, err = startProcess(ctx, bin, s.cluster.URL(db), logTo); err != nil {
		return r, err
	}
	defer d.stop() // stopped below; this is for errors
	if r.BacklogReadySec, err = d.waitReady(ctx, 5*time.Minute); err != nil {
		return r, d.fail(err)
	}
	readyAt, cpu0, sys0 := time.Now(), d.cpu(), d.sysCPU()
	// Not every 5 ms: a scrape of 1,000 views' series costs the daemon
	// CPU, which would be counted as routing.
	if err := pollEvery(ctx, 10*time.Minute, 50*time.Millisecond, func() (bool, error) {
		m, err := d.metrics()
		return m["mvrefresher_wal_changes_total"] >= changes, err
	}); err != nil {
		return r, d.fail(err)
	}
	r.RouteSec, r.RouteCPUSec, r.RouteSysSec = since(readyAt), d.cpu()-cpu0, d.sysCPU()-sys0
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		var lsn *pglogrepl.LSN
		err := conn.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'mvrefresher'").Scan(&lsn)
		return lsn != nil && *lsn >= target, err
	}); err != nil {
		return r, d.fail(err)
	}
	r.DrainSec, r.DrainCPUSec = since(readyAt), d.cpu()-cpu0
	r.RSSEndMB, r.HWMMB = d.memory()
	if err := d.stop(); err != nil {
		return r, err
	}
	return r, nil
}

// process is the daemon binary running as a subprocess.
type process struct {
	cmd      *exec.Cmd
	started  time.Time
	listen   string
	exited   chan struct{}
	mu       sync.Mutex
	tail     []string  // the last lines of its log
	starting time.Time // when it logged "starting"
}

func startProcess(ctx context.Context, bin, url string, logTo io.Writer) (*process, error) {
	return startCommand(ctx, nil, bin, []string{"--database-url", url, "--schemas", "mv"}, logTo)
}

// startCommand runs bin run with args, under the command prefix (taskset -c
// 1, say: it execs bin, so the pid is the daemon's).
func startCommand(_ context.Context, prefix []string, bin string, args []string, logTo io.Writer) (*process, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	listen := ln.Addr().String()
	ln.Close()
	p := &process{listen: listen, exited: make(chan struct{})}
	argv := append(append(append(slices.Clone(prefix), bin, "run"), args...), "--listen", listen, "--log-format", "json", "--log-level", "info")
	p.cmd = exec.Command(argv[0], argv[1:]...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go p.readLog(stderr, logTo)
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *process) readLog(r io.Reader, copyTo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		at := time.Now()
		if copyTo != nil {
			fmt.Fprintln(copyTo, sc.Text())
		}
		var line struct {
			Msg string `json:"msg"`
		}
		_ = json.Unmarshal(sc.Bytes(), &line)
		p.mu.Lock()
		if line.Msg == "starting" && p.starting.IsZero() {
			p.starting = at
		}
		p.tail = append(p.tail, sc.Text())
		if len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	}
}

func (p *process) startingAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starting
}

// fail stops the process and adds the end of its log to err.
func (p *process) fail(err error) error {
	_ = p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%w; daemon log:\n%s", err, strings.Join(p.tail, "\n"))
}

// waitReady polls /readyz every millisecond and returns the time from exec
// until it answered 200.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) (float64, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://" + p.listen + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return since(p.started), nil
			}
		}
		select {
		case <-p.exited:
			return 0, errors.New("the daemon exited before it was ready")
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not ready within %s", timeout)
		}
	}
}

// metrics reads /metrics and sums each metric over its labels.
func (p *process) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

// cpu is the process's user and system time in seconds.
func (p *process) cpu() float64 { return procTotalCPU(p.cmd.Process.Pid) }

func (p *process) sysCPU() float64 {
	_, sys := procCPU(p.cmd.Process.Pid)
	return sys
}

// procTotalCPU is a process's user plus system time in seconds.
func procTotalCPU(pid int) float64 {
	user, sys := procCPU(pid)
	return user + sys
}

// procCPU is a process's user and system time in seconds (0 when gone).
func procCPU(pid int) (user, sys float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime and stime fields 14 and 15.
	text := string(data)
	f := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(f) < 13 {
		return 0, 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return utime / 100, stime / 100 // USER_HZ is 100 on Linux
}

// memory is the process's resident set and its peak, in MB.
func (p *process) memory() (rss, hwm float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("the daemon exited with code %d", code)
		}
		return nil
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("the daemon did not stop within a minute of SIGTERM")
	}
}

func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return pollEvery(ctx, timeout, 5*time.Millisecond, cond)
}

func pollEvery(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still waiting after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

func printScale(rs []scaleRun) {
	fmt.Printf("scale: %d views over %d tables, the daemon binary as a subprocess (median of %d runs, min-max)\n\n", rs[0].Views, rs[0].Tables, len(rs))
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	row := func(name string, prec int, f func(scaleRun) float64) {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		fmt.Printf("| %s | %s |\n", name, spread(v, prec))
	}
	row("first start: exec → /readyz 200, s (slot, publication, every view queued for a startup refresh)", 3, func(r scaleRun) float64 { return r.FirstReadySec })
	row("first start: exec → every startup refresh in the log, s", 1, func(r scaleRun) float64 { return r.FirstStartupDoneSec })
	row("restart: exec → \"starting\" logged, s (discovery done, nothing to refresh)", 3, func(r scaleRun) float64 { return r.StartingSec })
	row("restart: exec → /readyz 200, s", 3, func(r scaleRun) float64 { return r.ReadySec })
	row("restart: RSS when idle, MB", 1, func(r scaleRun) float64 { return r.RSSIdleMB })
	row("restart: Go heap in use, MB", 1, func(r scaleRun) float64 { return r.HeapInuseMB })
	row("restart: Go heap released to the OS, MB", 1, func(r scaleRun) float64 { return r.HeapReleasedMB })
	row("restart: memory the Go runtime holds (go_memstats_sys_bytes), MB", 1, func(r scaleRun) float64 { return r.GoSysMB })
	row("backlog start: exec → /readyz 200, s", 3, func(r scaleRun) float64 { return r.BacklogReadySec })
	row(fmt.Sprintf("backlog: ready → %d changes routed, s", rs[0].Changes), 2, func(r scaleRun) float64 { return r.RouteSec })
	row("backlog: routed changes per second", 0, func(r scaleRun) float64 { return float64(r.Changes) / r.RouteSec })
	row("backlog: CPU-s per million routed changes", 2, func(r scaleRun) float64 { return r.RouteCPUSec / float64(r.Changes) * 1e6 })
	row("backlog: of which in the kernel (the socket's receive path)", 2, func(r scaleRun) float64 { return r.RouteSysSec / float64(r.Changes) * 1e6 })
	row("backlog: ready → slot past the backlog (views refreshed), s", 2, func(r scaleRun) float64 { return r.DrainSec })
	row("backlog: CPU-s per million changes, until drained", 2, func(r scaleRun) float64 { return r.DrainCPUSec / float64(r.Changes) * 1e6 })
	row("backlog: RSS at the end, MB", 1, func(r scaleRun) float64 { return r.RSSEndMB })
	row("backlog: peak RSS (VmHWM), MB", 1, func(r scaleRun) float64 { return r.HWMMB })
}
