package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// memory: many views over one table and many small transactions, the real
// binary as a subprocess: the daemon's peak resident memory while it
// catches up on a backlog written while it was stopped, then under a
// steady rate of commits. The views are cheap (an index lookup that finds
// nothing) so that the daemon, not the refreshes, is what is measured.
type memory struct {
	cluster *localpg.Cluster
	views   int
	backlog int     // single-row transactions written while the daemon is stopped
	rate    int     // transactions per second afterwards
	seconds int     // for this long
	builds  []build // the daemons to compare
	logFile string
}

// build is a daemon binary built from a checkout.
type build struct {
	label, dir, bin string
}

type memoryRun struct {
	Build   string `json:"build"`
	Run     int    `json:"run"`
	Views   int    `json:"views"`
	Backlog int    `json:"backlog_transactions"`
	// Backlog: from the start until the slot's confirmed position passes
	// it, and the peak resident set (VmHWM) meanwhile.
	BacklogWriteSec float64 `json:"backlog_write_seconds"`
	CatchUpSec      float64 `json:"catch_up_seconds"`
	BacklogPeakMB   float64 `json:"backlog_rss_peak_mb"`
	// Rate: the set rate for the set time (writeAtRate), then until the
	// slot passes what it wrote; the peak resident set over that span (VmHWM reset
	// before it).
	RateTPS        float64 `json:"rate_tps"`
	RateTxns       int64   `json:"rate_transactions"`
	RateCatchUpSec float64 `json:"rate_catch_up_seconds"` // after the writes ended
	RatePeakMB     float64 `json:"rate_rss_peak_mb"`
	EndRSSMB       float64 `json:"end_rss_mb"`
}

func runMemory(ctx context.Context, m memory, runs int) ([]memoryRun, error) {
	for i := range m.builds {
		b := &m.builds[i]
		bin, remove, err := buildDaemon(ctx, b.dir)
		if err != nil {
			return nil, err
		}
		defer remove()
		b.bin = bin
	}
	var out []memoryRun
	for i := 1; i <= runs; i++ {
		for _, b := range m.builds {
			r, err := m.run(ctx, b, i)
			if err != nil {
				return nil, fmt.Errorf("memory run %d of %s: %w", i, b.label, err)
			}
			fmt.Fprintf(os.Stderr, "run %d %s: backlog of %d written in %.1fs, caught up in %.1fs, peak RSS %.1f MB; %.0f tps for %ds, caught up %.1fs after, peak RSS %.1f MB\n",
				i, b.label, r.Backlog, r.BacklogWriteSec, r.CatchUpSec, r.BacklogPeakMB, r.RateTPS, m.seconds, r.RateCatchUpSec, r.RatePeakMB)
			out = append(out, r)
		}
	}
	printMemory(m, out)
	return out, nil
}

// parseBuilds reads label=dir,label=dir.
func parseBuilds(s string) ([]build, error) {
	var bs []build
	for _, part := range strings.Split(s, ",") {
		label, dir, ok := strings.Cut(part, "=")
		if !ok || label == "" || dir == "" {
			return nil, fmt.Errorf("-memory-builds: %q is not label=directory", part)
		}
		bs = append(bs, build{label: label, dir: dir})
	}
	return bs, nil
}

func (m memory) schema() string {
	var b strings.Builder
	b.WriteString(`CREATE SCHEMA src; CREATE SCHEMA mv;
		CREATE TABLE src.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int NOT NULL, v int NOT NULL);
		CREATE INDEX ON src.events (k);
		INSERT INTO src.events (k, v) VALUES (1, 1);
	`)
	for v := range m.views {
		fmt.Fprintf(&b, "CREATE MATERIALIZED VIEW mv.v_%03d AS SELECT id, v FROM src.events WHERE k = -%d;\n", v, v+1)
		fmt.Fprintf(&b, "CREATE UNIQUE INDEX ON mv.v_%03d (id);\n", v)
	}
	return b.String()
}

func (m memory) run(ctx context.Context, b build, run int) (memoryRun, error) {
	r := memoryRun{Build: b.label, Run: run, Views: m.views, Backlog: m.backlog}
	var logTo io.Writer
	if m.logFile != "" {
		f, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return r, err
		}
		defer f.Close()
		logTo = f
	}
	db := fmt.Sprintf("memory_%d_%s", run, b.label)
	if err := m.cluster.CreateDatabase(ctx, db); err != nil {
		return r, err
	}
	url := m.cluster.URL(db)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return r, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, m.schema()); err != nil {
		return r, err
	}
	defer conn.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()") // cleanup
	// First start: slot, publication and every view's startup refresh.
	d, err := startProcess(ctx, b.bin, url, logTo)
	if err != nil {
		return r, err
	}
	if _, err := d.waitReady(ctx, 5*time.Minute); err != nil {
		return r, d.fail(err)
	}
	if err := poll(ctx, 10*time.Minute, func() (bool, error) {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM public.mv_refresh_log WHERE lsn IS NOT NULL").Scan(&n)
		return n >= m.views, ignoreMissing(err)
	}); err != nil {
		return r, d.fail(err)
	}
	if err := d.stop(); err != nil {
		return r, err
	}

	// The backlog, written while the daemon is stopped: a transaction per
	// row, committed by the server in a loop (no round trip each).
	fmt.Fprintf(logWriter, "run %d %s: writing %d single-row transactions\n", run, b.label, m.backlog)
	t0 := time.Now()
	for done := 0; done < m.backlog; done += 100_000 {
		n := min(100_000, m.backlog-done)
		if _, err := conn.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN
			FOR i IN 1..%d LOOP INSERT INTO src.events (k, v) VALUES (1 + i %% 1000, 1); COMMIT; END LOOP; END $$`, n)); err != nil {
			return r, fmt.Errorf("write the backlog: %w", err)
		}
	}
	r.BacklogWriteSec = since(t0)
	target, err := walInsertLSN(ctx, conn)
	if err != nil {
		return r, err
	}
	if d, err = startProcess(ctx, b.bin, url, logTo); err != nil {
		return r, err
	}
	defer d.stop() // stopped below; this is for errors
	if err := waitConfirmed(ctx, conn, d, target); err != nil {
		return r, err
	}
	r.CatchUpSec = since(d.started)
	_, r.BacklogPeakMB = d.memory()

	// A steady rate, the peak measured afresh.
	if err := resetPeakRSS(d.cmd.Process.Pid); err != nil {
		return r, err
	}
	fmt.Fprintf(logWriter, "run %d %s: %d transactions/s for %ds\n", run, b.label, m.rate, m.seconds)
	if r.RateTxns, r.RateTPS, err = writeAtRate(ctx, url, m.rate, m.seconds); err != nil {
		return r, err
	}
	ended := time.Now()
	if target, err = walInsertLSN(ctx, conn); err != nil {
		return r, err
	}
	if err := waitConfirmed(ctx, conn, d, target); err != nil {
		return r, err
	}
	r.RateCatchUpSec = since(ended)
	r.EndRSSMB, r.RatePeakMB = d.memory()
	return r, d.stop()
}

// writeAtRate commits single-row transactions at rate a second for seconds
// from two sessions, each a server-side loop that paces itself: pgbench's
// round trip per transaction could not reach 10,000 a second on the
// 2-core machine. It returns how many it committed and at what rate.
func writeAtRate(ctx context.Context, url string, rate, seconds int) (txns int64, tps float64, err error) {
	const sessions = 2
	per := rate / sessions * seconds
	t0 := time.Now()
	errs := make(chan error, sessions)
	for range sessions {
		go func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			_, err = conn.Exec(ctx, fmt.Sprintf(`DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
				FOR i IN 1..%d LOOP
					INSERT INTO src.events (k, v) VALUES (1 + i %% 1000, 1); COMMIT;
					IF i %% 50 = 0 THEN
						PERFORM pg_sleep(greatest(0, extract(epoch FROM t0 + make_interval(secs => i / %d.0) - clock_timestamp())));
					END IF;
				END LOOP; END $$`, per, rate/sessions))
			errs <- err
		}()
	}
	for range sessions {
		if e := <-errs; e != nil && err == nil {
			err = fmt.Errorf("write at a rate: %w", e)
		}
	}
	txns = int64(per * sessions)
	return txns, float64(txns) / since(t0), err
}

func walInsertLSN(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&lsn)
	return lsn, err
}

// waitConfirmed waits until the slot's confirmed position passes target:
// every view is refreshed with what came before it.
func waitConfirmed(ctx context.Context, conn *pgx.Conn, d *process, target pglogrepl.LSN) error {
	if err := pollEvery(ctx, 30*time.Minute, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-d.exited:
			return false, errors.New("the daemon exited")
		default:
		}
		var lsn *pglogrepl.LSN
		err := conn.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'mvrefresher'").Scan(&lsn)
		return lsn != nil && *lsn >= target, err
	}); err != nil {
		return d.fail(err)
	}
	return nil
}

// resetPeakRSS starts VmHWM afresh from the current resident set (Linux's
// clear_refs 5).
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset the daemon's peak RSS: %w", err)
	}
	return nil
}

func printMemory(m memory, rs []memoryRun) {
	fmt.Printf("\nmemory: %d views over one table; a backlog of %d single-row transactions, then %d/s for %ds; median (min-max) of %d runs\n\n",
		m.views, m.backlog, m.rate, m.seconds, len(rs)/len(m.builds))
	fmt.Print("| measure |")
	for _, b := range m.builds {
		fmt.Printf(" %s |", b.label)
	}
	fmt.Print("\n|---|")
	for range m.builds {
		fmt.Print("---|")
	}
	fmt.Println()
	row := func(name string, prec int, f func(memoryRun) float64) {
		fmt.Printf("| %s |", name)
		for _, b := range m.builds {
			var vs []float64
			for _, r := range rs {
				if r.Build == b.label {
					vs = append(vs, f(r))
				}
			}
			fmt.Printf(" %s |", spread(vs, prec))
		}
		fmt.Println()
	}
	row("backlog: written in, s", 1, func(r memoryRun) float64 { return r.BacklogWriteSec })
	row("backlog: start until the slot passes it, s", 1, func(r memoryRun) float64 { return r.CatchUpSec })
	row("backlog: peak RSS (VmHWM), MB", 1, func(r memoryRun) float64 { return r.BacklogPeakMB })
	row("rate: achieved transactions/s", 0, func(r memoryRun) float64 { return r.RateTPS })
	row("rate: caught up after the writes ended, s", 1, func(r memoryRun) float64 { return r.RateCatchUpSec })
	row("rate: peak RSS (VmHWM reset before), MB", 1, func(r memoryRun) float64 { return r.RatePeakMB })
	row("RSS at the end, MB", 1, func(r memoryRun) float64 { return r.EndRSSMB })
}
