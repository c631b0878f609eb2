package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localnats"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// versus: the seed's four views over a large fact table, one traffic
// pattern (bursts, a batch import, long idle periods) replayed at a
// compressed pace against three ways of keeping the views fresh: a timer
// refreshing all four every period, a refresh of all four after every
// commit, and mvrefresher with its default settings.
type versus struct {
	cluster           *localpg.Cluster
	rows              int
	minutes, compress float64
	period            time.Duration
	maxWait           time.Duration // the daemon's max_wait, simulated
	maxStaleness      time.Duration // the daemon's max_staleness, simulated; 0 = none
	strategies        []string
	// maintained: the views are the dashboards' five (dashboardViews), not
	// the seed's four, and mvrefresher maintains them incrementally.
	maintained bool
	logger     *slog.Logger
}

// views are the views the strategies keep fresh, in the order the timer
// refreshes them.
func (v versus) views() []string {
	if v.maintained {
		return dashboardViews
	}
	return versusViews
}

// The seed's schema (cmd/mvrefresher/demo_schema.sql) without the demo's
// fifth view (mv_revenue_monthly, a view over a view): the seed refreshed
// these four.
const versusSchema = `
CREATE SCHEMA core; CREATE SCHEMA analytics;
CREATE TABLE core.fact_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY,
    occurred_at timestamptz NOT NULL,
    account_id  int NOT NULL,
    session_id  bigint NOT NULL,
    event_type  text NOT NULL,
    experiment  text,
    variant     text,
    amount      numeric(12, 2) NOT NULL DEFAULT 0,
    properties  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE core.fact_events_past PARTITION OF core.fact_events FOR VALUES FROM (MINVALUE) TO ('2026-01-01');
CREATE TABLE core.fact_events_2026 PARTITION OF core.fact_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE core.fact_events_future PARTITION OF core.fact_events DEFAULT;
CREATE VIEW analytics.v_purchases AS
    SELECT occurred_at, account_id, amount FROM core.fact_events WHERE event_type = 'purchase';
CREATE MATERIALIZED VIEW analytics.mv_conversion_funnels AS
    SELECT account_id % 20 AS segment, event_type AS funnel_step, count(DISTINCT session_id) AS sessions
    FROM core.fact_events GROUP BY 1, 2 WITH NO DATA;
CREATE UNIQUE INDEX ON analytics.mv_conversion_funnels (segment, funnel_step);
CREATE MATERIALIZED VIEW analytics.mv_retention_cohorts AS
    WITH firsts AS (SELECT account_id, min(occurred_at) AS first_seen FROM core.fact_events GROUP BY 1)
    SELECT date_trunc('week', f.first_seen) AS cohort_week,
           (extract(epoch FROM date_trunc('week', e.occurred_at) - date_trunc('week', f.first_seen)) / 604800)::int AS week_offset,
           count(DISTINCT e.account_id) AS accounts
    FROM core.fact_events e JOIN firsts f USING (account_id) GROUP BY 1, 2 WITH NO DATA;
CREATE UNIQUE INDEX ON analytics.mv_retention_cohorts (cohort_week, week_offset);
CREATE MATERIALIZED VIEW analytics.mv_revenue_summary AS
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS purchases, sum(amount) AS revenue
    FROM analytics.v_purchases GROUP BY 1 WITH NO DATA;
CREATE UNIQUE INDEX ON analytics.mv_revenue_summary (day);
CREATE MATERIALIZED VIEW analytics.mv_experiment_results AS
    SELECT experiment, variant, count(DISTINCT session_id) AS exposures,
           count(*) FILTER (WHERE event_type = 'purchase') AS conversions
    FROM core.fact_events WHERE experiment IS NOT NULL GROUP BY 1, 2 WITH NO DATA;
CREATE UNIQUE INDEX ON analytics.mv_experiment_results (experiment, variant);`

// versusViews in the seed pipeline's order.
var versusViews = []string{
	"analytics.mv_conversion_funnels", "analytics.mv_retention_cohorts",
	"analytics.mv_revenue_summary", "analytics.mv_experiment_results",
}

// A year of history ending at $2, account ids and sessions as in the demo.
const versusLoad = `
INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
SELECT $2::timestamptz - interval '365 days' + (i * (interval '365 days' / $3)),
       i % 50000, i / 4,
       (ARRAY['visit', 'visit', 'signup', 'activate', 'purchase'])[1 + i % 5],
       CASE WHEN i % 3 = 0 THEN 'checkout_v2' END,
       CASE WHEN i % 3 = 0 THEN (ARRAY['control', 'treatment'])[1 + i % 2] END,
       CASE WHEN i % 5 = 4 THEN (i % 97) + 0.99 ELSE 0 END
FROM generate_series($1::bigint, $1::bigint + 499999) i WHERE i <= $3`

// New events: $1 is a sequence number that keeps them distinct.
const versusInsert = `
INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
SELECT now(), (($1 * 1000 + g) * 7919) % 60000, 100000000 + $1 * 1000 + g,
       (ARRAY['visit', 'visit', 'signup', 'activate', 'purchase'])[1 + ($1 + g) % 5],
       CASE WHEN g % 3 = 0 THEN 'checkout_v2' END,
       CASE WHEN g % 3 = 0 THEN (ARRAY['control', 'treatment'])[1 + ($1 + g) % 2] END,
       CASE WHEN ($1 + g) % 5 = 4 THEN 19.99 ELSE 0 END
FROM generate_series(1, $2) g`

// trafficCommit is one commit of the pattern, at a simulated offset.
type trafficCommit struct {
	at   time.Duration
	rows int
}

// versusPattern is 20 simulated minutes, repeated to fill -versus-minutes:
// a burst of user activity, a batch import, a second burst, and idle
// periods of 5 to 6.5 minutes between them.
func versusPattern(minutes float64) []trafficCommit {
	var base []trafficCommit
	for i := range 50 { // 1:00-1:25, 1-20 rows each
		base = append(base, trafficCommit{time.Minute + time.Duration(i)*500*time.Millisecond, 1 + (i*7)%20})
	}
	for i := range 4 { // 7:30, batch import
		base = append(base, trafficCommit{7*time.Minute + 30*time.Second + time.Duration(i)*1500*time.Millisecond, 2500})
	}
	for i := range 40 { // 13:10-13:30
		base = append(base, trafficCommit{13*time.Minute + 10*time.Second + time.Duration(i)*500*time.Millisecond, 1 + (i*11)%20})
	}
	const cycle = 20 * time.Minute
	end := time.Duration(minutes * float64(time.Minute))
	var out []trafficCommit
	for off := time.Duration(0); off < end; off += cycle {
		for _, c := range base {
			if c.at+off < end {
				out = append(out, trafficCommit{c.at + off, c.rows})
			}
		}
	}
	return out
}

// refreshRec is one refresh a strategy ran.
type refreshRec struct {
	view       string
	start, end time.Time
	rows       int64 // rows inserted + deleted in the view
	// how: for a maintained view, the maintenance's mode and the reason a
	// full one was.
	how string
}

type versusRun struct {
	Run      int    `json:"run"`
	Strategy string `json:"strategy"`
	// MaxWait is mvrefresher's max_wait, in simulated time.
	MaxWait string `json:"max_wait,omitempty"`
	// MaxStaleness is mvrefresher's max_staleness, in simulated time.
	MaxStaleness string `json:"max_staleness,omitempty"`
	// Maintained: the dashboard views, maintained incrementally.
	Maintained bool `json:"maintained,omitempty"`
	Commits    int  `json:"commits"`
	Rows       int  `json:"rows_written"`
	// Refreshes ran within the observed window (the traffic's duration, or
	// longer until every commit reached every view).
	Refreshes  int     `json:"refreshes"`
	RefreshSec float64 `json:"refresh_seconds"`
	// Owed: refreshes a per-commit pipeline still had queued at the end.
	Owed int `json:"refreshes_owed"`
	// CPU time of the PostgreSQL backends that ran the refreshes (the
	// daemon's pool connections, or the benchmark's refresh connection), and
	// of the daemon's walsender.
	RefreshCPUSec   float64 `json:"refresh_backend_cpu_seconds"`
	WalsenderCPUSec float64 `json:"walsender_cpu_seconds"`
	RowsRewritten   int64   `json:"rows_rewritten"`
	StaleP50        float64 `json:"staleness_p50_seconds"`
	StaleP95        float64 `json:"staleness_p95_seconds"`
	StaleMax        float64 `json:"staleness_max_seconds"`
	// Uncovered (commit, view) pairs no refresh included by the end; they
	// count with the staleness they had at the end (a lower bound).
	Uncovered int `json:"uncovered"`
	// Maintenances: mvrefresher's, by view and mode.
	Maintenances []maintenanceTally `json:"maintenances,omitempty"`
	WallSec      float64            `json:"wall_seconds"`
}

func runVersus(ctx context.Context, v versus, runs int) ([]versusRun, error) {
	for _, s := range v.strategies {
		if !slices.Contains([]string{"timer", "per-commit", "mvrefresher"}, s) {
			return nil, fmt.Errorf("unknown strategy %q (timer, per-commit, mvrefresher)", s)
		}
	}
	ns, err := localnats.Start()
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	if err := v.createTemplate(ctx); err != nil {
		return nil, err
	}
	pattern := versusPattern(v.minutes)
	rows := 0
	for _, c := range pattern {
		rows += c.rows
	}
	fmt.Fprintf(logWriter, "versus: %d commits, %d rows over %.0f simulated minutes, %.0fx faster: %.0f s per strategy; timer every %s (%s real)\n",
		len(pattern), rows, v.minutes, v.compress, v.minutes*60/v.compress, v.period, v.real(v.period))
	var out []versusRun
	for i := 1; i <= runs; i++ {
		for _, s := range v.strategies {
			r, err := v.run(ctx, ns, i, s, pattern)
			if err != nil {
				return nil, fmt.Errorf("versus run %d %s: %w", i, s, err)
			}
			fmt.Fprintf(os.Stderr, "run %d %-11s %4d refreshes (%d owed), %7.2f s refreshing (%.2f CPU-s), %9d rows rewritten, staleness p50 %.2f p95 %.2f max %.2f s, %d uncovered\n",
				i, s, r.Refreshes, r.Owed, r.RefreshSec, r.RefreshCPUSec, r.RowsRewritten, r.StaleP50, r.StaleP95, r.StaleMax, r.Uncovered)
			out = append(out, r)
		}
	}
	printVersus(out, v)
	return out, nil
}

// real converts a simulated duration to real time.
func (v versus) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / v.compress)
}

const versusTemplate = "versus_template"

// createTemplate loads the fact table once; every strategy of every run
// starts from a file copy of it.
func (v versus) createTemplate(ctx context.Context) error {
	if err := v.cluster.CreateDatabase(ctx, versusTemplate); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, v.cluster.URL(versusTemplate))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	start := time.Now()
	if _, err := conn.Exec(ctx, versusSchema); err != nil {
		return err
	}
	end := time.Now().Add(-time.Hour)
	for first := 1; first <= v.rows; first += 500_000 {
		if _, err := conn.Exec(ctx, versusLoad, first, end, v.rows); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE, FREEZE) core.fact_events"); err != nil {
		return err
	}
	if v.maintained {
		if err := createDashboardViews(ctx, conn); err != nil {
			return err
		}
	}
	var durs []string
	for _, view := range v.views() {
		t := time.Now()
		if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW "+view); err != nil {
			return err
		}
		t2 := time.Now()
		if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY "+view); err != nil {
			return err
		}
		durs = append(durs, fmt.Sprintf("%s %.2fs (concurrently, nothing changed: %.2fs)", view, t2.Sub(t).Seconds(), since(t2)))
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+view); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	fmt.Fprintf(logWriter, "versus: loaded %d rows in %.1fs; refresh: %v\n", v.rows, since(start), durs)
	return nil
}

func (v versus) run(ctx context.Context, ns *localnats.Server, run int, strategy string, pattern []trafficCommit) (versusRun, error) {
	db := fmt.Sprintf("versus_%d_%s", run, strategy)
	admin, err := pgx.Connect(ctx, v.cluster.URL("postgres"))
	if err != nil {
		return versusRun{}, err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" TEMPLATE "+versusTemplate+" STRATEGY FILE_COPY"); err != nil {
		return versusRun{}, err
	}
	defer func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", db)
		_, _ = admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
	}()
	writer, err := pgx.Connect(ctx, v.cluster.URL(db))
	if err != nil {
		return versusRun{}, err
	}
	defer writer.Close(context.Background())
	refConn, err := pgx.Connect(ctx, v.cluster.URL(db))
	if err != nil {
		return versusRun{}, err
	}
	defer refConn.Close(context.Background())

	var col *collector
	var stopDaemon func() error
	if strategy == "mvrefresher" {
		nc, err := nats.Connect(ns.URL())
		if err != nil {
			return versusRun{}, err
		}
		defer nc.Close()
		prefix := fmt.Sprintf("versus%d", run)
		if col, err = collect(nc, prefix); err != nil {
			return versusRun{}, err
		}
		cfg := config.Default()
		cfg.DatabaseURL, cfg.Schemas, cfg.Listen = v.cluster.URL(db), []string{"analytics"}, ""
		cfg.NATS.URL, cfg.NATS.SubjectPrefix = ns.URL(), prefix
		// The daemon's defaults (max_wait unless -versus-max-wait says
		// otherwise), on the simulated clock.
		cfg.Debounce, cfg.MaxWait = v.real(cfg.Debounce), v.real(v.maxWait)
		cfg.MaxStaleness = v.real(v.maxStaleness)
		if v.maintained {
			on := true
			cfg.Views = map[string]config.View{}
			for _, view := range v.views() {
				cfg.Views[view] = config.View{Incremental: &on}
			}
		}
		stopDaemon = startDaemon(ctx, cfg, v.logger)
		defer func() { _ = stopDaemon() }()
		// Its first start refreshes every view once (reason startup;
		// maintained views are converted first): not part of the
		// comparison.
		if err := col.waitFor(ctx, 5*time.Minute, "startup refreshes", func(rs []received) bool { return len(rs) >= len(v.views()) }); err != nil {
			return versusRun{}, err
		}
		time.Sleep(200 * time.Millisecond)
		if v.maintained {
			if err := checkMaintained(ctx, refConn, v.views()); err != nil {
				return versusRun{}, err
			}
		}
		col.reset()
	}

	// CPU of the backends doing the work, polled while it runs.
	backends := `SELECT pid, backend_type = 'walsender' FROM pg_stat_activity WHERE pid = $1`
	var refPID int
	if err := refConn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&refPID); err != nil {
		return versusRun{}, err
	}
	if strategy == "mvrefresher" {
		backends = `SELECT pid, backend_type = 'walsender' FROM pg_stat_activity
			WHERE application_name = 'mvrefresher' AND datname = current_database() AND $1::int IS NOT NULL`
	}
	cpu := newCPUWatch()
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		conn, err := pgx.Connect(pollCtx, v.cluster.URL(db))
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for {
			rows, err := listBackends(pollCtx, conn, backends, refPID)
			if err == nil {
				cpu.sample(rows)
			}
			select {
			case <-pollCtx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	stopCPU := func() { stopPoll(); <-polled; cpu.final() }

	// The writer replays the pattern; commits are recorded as they return.
	var mu sync.Mutex
	commits := make([]time.Time, 0, len(pattern))
	committed := make(chan struct{}, len(pattern))
	start := time.Now()
	window := start.Add(v.real(time.Duration(v.minutes * float64(time.Minute))))
	writeErr := make(chan error, 1)
	go func() {
		for i, c := range pattern {
			if d := time.Until(start.Add(v.real(c.at))); d > 0 {
				time.Sleep(d)
			}
			if _, err := writer.Exec(ctx, versusInsert, i, c.rows); err != nil {
				writeErr <- err
				return
			}
			mu.Lock()
			commits = append(commits, time.Now())
			mu.Unlock()
			committed <- struct{}{}
		}
		writeErr <- nil
	}()
	rowsWritten := 0
	for _, c := range pattern {
		rowsWritten += c.rows
	}
	snapshot := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(commits)
	}

	var recs []refreshRec
	owed := 0
	switch strategy {
	case "timer":
		period := v.real(v.period)
		for k := 1; ; k++ {
			tick := start.Add(time.Duration(k) * period)
			if tick.After(window.Add(time.Millisecond)) {
				break
			}
			if d := time.Until(tick); d > 0 {
				time.Sleep(d)
			} else if -d > period { // a cycle overran a whole period: skip the missed ticks
				continue
			}
			for _, view := range v.views() {
				r, err := refreshCounted(ctx, refConn, view)
				if err != nil {
					return versusRun{}, err
				}
				recs = append(recs, r)
			}
		}
	case "per-commit":
		// Every commit queues a refresh of every view reading the table,
		// in order, on one connection: what an AFTER trigger or a
		// refresh-after-each-write pipeline does, minus the locking of the
		// writer.
		queued := 0
		for {
			for len(committed) > 0 {
				<-committed
				queued++
			}
			if time.Now().After(window) && covered(v.views(), snapshot(), len(pattern), recs) {
				break
			}
			if queued == 0 {
				select {
				case <-committed:
					queued++
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			for _, view := range v.views() {
				r, err := refreshCounted(ctx, refConn, view)
				if err != nil {
					return versusRun{}, err
				}
				recs = append(recs, r)
			}
			queued--
		}
		owed = queued * len(v.views())
	case "mvrefresher":
		// The window itself, then up to 10 minutes for the last refreshes.
		if err := col.waitFor(ctx, time.Until(window)+10*time.Minute, "refreshes covering every commit", func(rs []received) bool {
			if time.Now().Before(window) {
				return false
			}
			return covered(v.views(), snapshot(), len(pattern), eventRecs(rs))
		}); err != nil {
			return versusRun{}, err
		}
		stopCPU()
		if err := stopDaemon(); err != nil {
			return versusRun{}, err
		}
		recs = eventRecs(col.events())
	default:
		stopCPU()
	}
	if err := <-writeErr; err != nil {
		return versusRun{}, err
	}
	end := time.Now()
	r := versusRun{Run: run, Strategy: strategy, Commits: len(pattern), Rows: rowsWritten, Refreshes: len(recs), Owed: owed, WallSec: since(start)}
	if strategy == "mvrefresher" {
		r.MaxWait, r.Maintained = v.maxWait.String(), v.maintained
		if v.maxStaleness > 0 {
			r.MaxStaleness = v.maxStaleness.String()
		}
	}
	r.RefreshCPUSec, r.WalsenderCPUSec = cpu.total(false), cpu.total(true)
	for _, rec := range recs {
		r.RefreshSec += rec.end.Sub(rec.start).Seconds()
		r.RowsRewritten += rec.rows
	}
	if v.maintained {
		r.Maintenances = tallyMaintenances(recs)
		for _, t := range r.Maintenances {
			fmt.Fprintf(logWriter, "run %d %s: %s %s x%d, %.3f s\n", run, strategy, t.View, t.How, t.Count, t.Seconds)
		}
	}
	var stale []float64
	for _, c := range snapshot() {
		for _, view := range v.views() {
			s, ok := stalenessOf(c, view, recs)
			if !ok {
				r.Uncovered++
				s = end.Sub(c)
			}
			stale = append(stale, s.Seconds())
		}
	}
	r.StaleP50, r.StaleP95, r.StaleMax = quantile(stale, 0.5), quantile(stale, 0.95), quantile(stale, 1)
	return r, nil
}

// maintenanceTally is how often a view was maintained one way, and how
// long that took in all.
type maintenanceTally struct {
	View    string  `json:"view"`
	How     string  `json:"how"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
}

func tallyMaintenances(recs []refreshRec) []maintenanceTally {
	var out []maintenanceTally
	for _, rec := range recs {
		if rec.how == "" {
			continue
		}
		i := slices.IndexFunc(out, func(t maintenanceTally) bool { return t.View == rec.view && t.How == rec.how })
		if i < 0 {
			out, i = append(out, maintenanceTally{View: rec.view, How: rec.how}), len(out)
		}
		out[i].Count++
		out[i].Seconds += rec.end.Sub(rec.start).Seconds()
	}
	return out
}

// checkMaintained fails unless every view was converted (a refused
// conversion leaves a materialized view, which the run would measure
// under the wrong name), then gives the new tables their statistics, as
// autovacuum would before long, so that the run does not start without.
func checkMaintained(ctx context.Context, conn *pgx.Conn, views []string) error {
	for _, view := range views {
		var kind string
		if err := conn.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", view).Scan(&kind); err != nil {
			return fmt.Errorf("find %s: %w", view, err)
		}
		if kind != "r" {
			return fmt.Errorf("%s was not converted for incremental maintenance (relkind %s): see the daemon's log", view, kind)
		}
		if _, err := conn.Exec(ctx, "ANALYZE "+view); err != nil {
			return fmt.Errorf("analyze %s: %w", view, err)
		}
	}
	return nil
}

// stalenessOf is the time from a commit until the end of the first refresh
// of the view that started after the commit returned (and so includes it).
func stalenessOf(commit time.Time, view string, recs []refreshRec) (time.Duration, bool) {
	for _, r := range recs {
		if r.view == view && r.start.After(commit) {
			return r.end.Sub(commit), true
		}
	}
	return 0, false
}

// covered reports whether all n commits are done and in every view.
func covered(views []string, commits []time.Time, n int, recs []refreshRec) bool {
	if len(commits) < n {
		return false
	}
	if n == 0 {
		return true
	}
	for _, view := range views {
		if _, ok := stalenessOf(commits[n-1], view, recs); !ok {
			return false
		}
	}
	return true
}

func eventRecs(rs []received) []refreshRec {
	var out []refreshRec
	for _, r := range rs {
		if r.e.Status != events.StatusOK {
			continue
		}
		rec := refreshRec{view: r.e.View, start: r.e.StartedAt, end: r.e.FinishedAt, how: r.e.Maintenance}
		if r.e.FullReason != "" {
			rec.how += " (" + r.e.FullReason + ")"
		}
		if r.e.RowsInserted != nil {
			rec.rows = *r.e.RowsInserted + *r.e.RowsDeleted
		}
		out = append(out, rec)
	}
	return out
}

// refreshCounted refreshes a view concurrently the way the daemon does: in a
// transaction, with the view's row counters read before and after.
func refreshCounted(ctx context.Context, conn *pgx.Conn, view string) (refreshRec, error) {
	const counters = `SELECT coalesce((SELECT n_tup_ins + n_tup_del FROM pg_stat_xact_user_tables WHERE relid = $1::regclass), 0)`
	r := refreshRec{view: view, start: time.Now()}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return r, err
	}
	defer tx.Rollback(context.Background()) // no-op after Commit
	var before, after int64
	if err := tx.QueryRow(ctx, counters, view).Scan(&before); err != nil {
		return r, err
	}
	if _, err := tx.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY "+view); err != nil {
		return r, err
	}
	if err := tx.QueryRow(ctx, counters, view).Scan(&after); err != nil {
		return r, err
	}
	if err := tx.Commit(ctx); err != nil {
		return r, err
	}
	r.end, r.rows = time.Now(), after-before
	return r, nil
}

func printVersus(rs []versusRun, v versus) {
	fmt.Printf("versus: %v; %d commits (%d rows) over %.0f simulated minutes, replayed %.0fx faster (%.0f s); timer every %s simulated (%s real); mvrefresher's max_wait %s, max_staleness %s simulated, incremental %t; staleness in real seconds (median of the runs, min-max)\n\n",
		v.views(), rs[0].Commits, rs[0].Rows, v.minutes, v.compress, v.minutes*60/v.compress, v.period, v.real(v.period), v.maxWait, v.maxStaleness, v.maintained)
	fmt.Println("| strategy | runs | refreshes | refreshes owed at the end | refresh s in PostgreSQL | refresh backends' CPU s | walsender CPU s | rows rewritten | staleness p50 s | staleness p95 s | staleness max s |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	by := map[string][]versusRun{}
	for _, r := range rs {
		by[r.Strategy] = append(by[r.Strategy], r)
	}
	col := func(rs []versusRun, f func(versusRun) float64) []float64 {
		var out []float64
		for _, r := range rs {
			out = append(out, f(r))
		}
		return out
	}
	for _, s := range v.strategies {
		g := by[s]
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s, len(g),
			spread(col(g, func(r versusRun) float64 { return float64(r.Refreshes) }), 0),
			spread(col(g, func(r versusRun) float64 { return float64(r.Owed) }), 0),
			spread(col(g, func(r versusRun) float64 { return r.RefreshSec }), 1),
			spread(col(g, func(r versusRun) float64 { return r.RefreshCPUSec }), 1),
			spread(col(g, func(r versusRun) float64 { return r.WalsenderCPUSec }), 2),
			spread(col(g, func(r versusRun) float64 { return float64(r.RowsRewritten) }), 0),
			spread(col(g, func(r versusRun) float64 { return r.StaleP50 }), 2),
			spread(col(g, func(r versusRun) float64 { return r.StaleP95 }), 2),
			spread(col(g, func(r versusRun) float64 { return r.StaleMax }), 2))
	}
	med := func(s string, f func(versusRun) float64) float64 {
		vals := col(by[s], f)
		if len(vals) == 0 {
			return math.NaN()
		}
		slices.Sort(vals)
		return vals[len(vals)/2]
	}
	if len(by["timer"]) > 0 && len(by["mvrefresher"]) > 0 {
		p95 := func(r versusRun) float64 { return r.StaleP95 }
		sec := func(r versusRun) float64 { return r.RefreshSec }
		cpu := func(r versusRun) float64 { return r.RefreshCPUSec }
		targets := "staleness p95 target >= 10x lower, refresh time target <= 1x"
		if v.maintained {
			targets = "staleness p95 target <= 3 s, refresh time target <= 1/20 = 0.05x"
		}
		fmt.Printf("\nmvrefresher vs timer (medians; %s): staleness p95 %.2f s, %.1fx lower, refresh time %.3fx the timer's, refresh backends' CPU %.3fx",
			targets, med("mvrefresher", p95), med("timer", p95)/med("mvrefresher", p95), med("mvrefresher", sec)/med("timer", sec), med("mvrefresher", cpu)/med("timer", cpu))
		if len(by["per-commit"]) > 0 {
			fmt.Printf(", %.2fx per-commit's", med("mvrefresher", sec)/med("per-commit", sec))
		}
		fmt.Println()
	}
	var uncovered []string
	for _, r := range rs {
		if r.Uncovered > 0 {
			uncovered = append(uncovered, fmt.Sprintf("run %d %s: %d", r.Run, r.Strategy, r.Uncovered))
		}
	}
	if len(uncovered) > 0 {
		fmt.Printf("(commit, view) pairs no refresh covered by the end, counted with their staleness at the end: %v\n", uncovered)
	}
}

// cpuWatch follows the CPU time of a set of backends from their first
// sighting (a backend seen later started during the run, near zero).
type cpuWatch struct {
	mu        sync.Mutex
	first     map[int]float64
	last      map[int]float64
	walsender map[int]bool
}

func newCPUWatch() *cpuWatch {
	return &cpuWatch{first: map[int]float64{}, last: map[int]float64{}, walsender: map[int]bool{}}
}

type backend struct {
	pid       int
	walsender bool
}

func (c *cpuWatch) sample(bs []backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bs {
		t := procTotalCPU(b.pid)
		if _, ok := c.first[b.pid]; !ok {
			c.first[b.pid], c.walsender[b.pid] = t, b.walsender
		}
		if t > 0 {
			c.last[b.pid] = t
		}
	}
}

// final reads every known backend once more.
func (c *cpuWatch) final() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid := range c.first {
		if t := procTotalCPU(pid); t > 0 {
			c.last[pid] = t
		}
	}
}

func (c *cpuWatch) total(walsender bool) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := 0.0
	for pid, t0 := range c.first {
		if c.walsender[pid] == walsender {
			sum += c.last[pid] - t0
		}
	}
	return sum
}

// listBackends lists the backends to watch.
func listBackends(ctx context.Context, conn *pgx.Conn, sql string, arg int) ([]backend, error) {
	rows, err := conn.Query(ctx, sql, arg)
	if err != nil {
		return nil, err
	}
	var out []backend
	for rows.Next() {
		var b backend
		if err := rows.Scan(&b.pid, &b.walsender); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
