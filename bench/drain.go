package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// drain: a backlog written while the daemon is stopped; the time from its
// start until the slot's confirmed position passes the backlog, against
// pg_recvlogical reading the same publication from a second slot.
type drain struct {
	cluster                     *localpg.Cluster
	bulkTxns, bulkRows, singles int
	// maintained: the view is maintained incrementally, so the stream
	// decodes the bucket column of every row (an index on it lets the
	// daemon follow the rows rather than recompute the view whole).
	maintained bool
	logger     *slog.Logger
}

// scenario names the runs' results.
func (d drain) scenario() string {
	if d.maintained {
		return "drain, view maintained"
	}
	return "drain"
}

const drainSchema = `
CREATE SCHEMA core; CREATE SCHEMA analytics;
CREATE TABLE core.fact_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL, account_id int NOT NULL, payload jsonb NOT NULL);
CREATE MATERIALIZED VIEW analytics.mv_daily AS
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS n FROM core.fact_events GROUP BY 1;
CREATE UNIQUE INDEX ON analytics.mv_daily (day);`

func (d drain) run(ctx context.Context, run int) ([]result, error) {
	db := fmt.Sprintf("drain_%d", run)
	if err := d.cluster.CreateDatabase(ctx, db); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, d.cluster.URL(db))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	schema := drainSchema
	cfg := config.Default()
	cfg.DatabaseURL, cfg.Schemas, cfg.Listen, cfg.Debounce = d.cluster.URL(db), []string{"analytics"}, "", 0
	if d.maintained {
		schema += "\nCREATE INDEX ON core.fact_events (occurred_at);"
		on := true
		cfg.Views = map[string]config.View{"analytics.mv_daily": {Incremental: &on}}
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		return nil, err
	}
	// First start: publication, slot, refresh log; then stopped. Not before
	// its walsender streams: until then the slot may not be there to stay,
	// and the measured run would find none.
	if err := d.runDaemonUntil(ctx, cfg, pool, func() (bool, error) {
		var logged, streaming bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM public.mv_refresh_log),
			EXISTS (SELECT FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
				WHERE s.slot_name = $1 AND NOT s.temporary AND r.state = 'streaming')`, cfg.Slot).Scan(&logged, &streaming)
		return logged && streaming, ignoreMissing(err)
	}); err != nil {
		return nil, fmt.Errorf("first start: %w", err)
	}
	if d.maintained {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		err = checkMaintained(ctx, conn.Conn(), []string{"analytics.mv_daily"})
		conn.Release()
		if err != nil {
			return nil, err
		}
	}
	if _, err := pool.Exec(ctx, "SELECT pg_create_logical_replication_slot('recvlogical', 'pgoutput')"); err != nil {
		return nil, err
	}
	defer dropSlots(pool)

	fmt.Fprintf(logWriter, "run %d: writing %d x %d rows and %d single-row transactions\n", run, d.bulkTxns, d.bulkRows, d.singles)
	for range d.bulkTxns {
		if _, err := pool.Exec(ctx, `INSERT INTO core.fact_events (occurred_at, account_id, payload)
			SELECT now() - (g % 1000) * interval '1 minute', g % 500, jsonb_build_object('k', g, 'v', 'x')
			FROM generate_series(1, $1) g`, d.bulkRows); err != nil {
			return nil, err
		}
	}
	for i := range d.singles {
		if _, err := pool.Exec(ctx, `INSERT INTO core.fact_events (occurred_at, account_id, payload) VALUES (now(), $1, '{"k": 1}')`, i%500); err != nil {
			return nil, err
		}
	}
	var target pglogrepl.LSN
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&target); err != nil {
		return nil, err
	}
	changes := int64(d.bulkTxns*d.bulkRows + d.singles)

	measureDaemon := func() (result, error) {
		// The daemon runs in this process, and so does the polling below:
		// the polling goroutine keeps one thread to itself, whose CPU time
		// is then taken out of the process's.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before, pollBefore := cpuTime(syscall.RUSAGE_SELF), cpuTime(rusageThread)
		start := time.Now()
		// Where the time goes: until the daemon's walsender starts, until it
		// has sent the backlog, until the slot confirms it.
		var streaming, sent float64
		err := d.runDaemonUntil(ctx, cfg, pool, func() (bool, error) {
			var lsn, sentLSN *pglogrepl.LSN
			err := pool.QueryRow(ctx, `SELECT s.confirmed_flush_lsn, r.sent_lsn FROM pg_replication_slots s
				LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`, cfg.Slot).Scan(&lsn, &sentLSN)
			if sentLSN != nil && streaming == 0 {
				streaming = since(start)
			}
			if sentLSN != nil && *sentLSN >= target && sent == 0 {
				sent = since(start)
			}
			return lsn != nil && *lsn >= target, err
		})
		wall := since(start)
		poll := cpuTime(rusageThread).minus(pollBefore)
		cpu := cpuTime(syscall.RUSAGE_SELF).minus(before).minus(poll)
		fmt.Fprintf(logWriter, "run %d mvrefresher: streaming after %.2fs, backlog sent after %.2fs, confirmed after %.2fs; CPU %.2fs, of which in the kernel %.2fs (the benchmark's polling, %.2fs, not counted)\n",
			run, streaming, sent, wall, cpu.total(), cpu.sys, poll.total())
		return result{d.scenario(), "mvrefresher", run, changes, wall, cpu.total()}, err
	}
	measureRecvlogical := func() (result, error) {
		start := time.Now()
		cmd := exec.CommandContext(ctx, filepath.Join(d.cluster.BinDir(), "pg_recvlogical"),
			"-d", d.cluster.URL(db), "-S", "recvlogical", "--start", "-o", "proto_version=1",
			"-o", "publication_names="+cfg.Publication, "--endpos", target.String(), "-f", "/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			return result{}, fmt.Errorf("pg_recvlogical: %w: %s", err, out)
		}
		wall := since(start)
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		fmt.Fprintf(logWriter, "run %d pg_recvlogical: CPU %.2fs, of which in the kernel %.2fs\n", run, cpu.Seconds(), cmd.ProcessState.SystemTime().Seconds())
		return result{d.scenario(), "pg_recvlogical", run, changes, wall, cpu.Seconds()}, nil
	}
	order := []func() (result, error){measureDaemon, measureRecvlogical}
	if run%2 == 0 { // neither always reads the WAL from a warm cache
		order[0], order[1] = order[1], order[0]
	}
	var out []result
	for _, m := range order {
		r, err := m()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// runDaemonUntil runs the daemon in this process until cond holds, then
// stops it gracefully.
func (d drain) runDaemonUntil(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, cond func() (bool, error)) error {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- daemon.New(cfg, d.logger).Run(runCtx) }()
	defer func() { cancel(); <-done }()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("daemon stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// rusageThread is RUSAGE_THREAD: the calling thread's CPU time.
const rusageThread = 1

// cpuUse is CPU time in seconds: user and system (the kernel's share,
// mostly the receive path of the replication socket).
type cpuUse struct{ user, sys float64 }

func (c cpuUse) total() float64        { return c.user + c.sys }
func (c cpuUse) minus(o cpuUse) cpuUse { return cpuUse{c.user - o.user, c.sys - o.sys} }

// cpuTime is the CPU time of this process (RUSAGE_SELF) or of the calling
// thread (rusageThread).
func cpuTime(who int) cpuUse {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return cpuUse{}
	}
	return cpuUse{time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds()}
}

// dropSlots drops the run's slots. A walsender that just lost its client may
// still hold its slot for a moment: wait for that, for a few seconds.
func dropSlots(pool *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var active int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active").Scan(&active)
		if err != nil || active == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	_, _ = pool.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active")
}
