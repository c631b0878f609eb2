package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/replication"
)

// incremental: on the versus fact table, each view that can be maintained
// incrementally is maintained by maintain.Maintain from the changed rows,
// handed over as the stream would, while a twin materialized view of the
// same definition is refreshed CONCURRENTLY on the same data.
type incremental struct {
	cluster *localpg.Cluster
	rows    int
	// singles one-row batches; the twins are refreshed at refreshes of
	// them (a refresh recomputes everything however many rows changed).
	singles, refreshes int
	// bulks batches of bulkRows rows on one day each.
	bulks, bulkRows int
}

// incCase is one view's measurements of one kind of batch, in ms.
type incCase struct {
	View     string    `json:"view"`
	Case     string    `json:"case"`
	Wall     []float64 `json:"maintain_wall_ms"`
	DB       []float64 `json:"maintain_db_ms"`
	TwinWall []float64 `json:"concurrently_wall_ms"`
	TwinDB   []float64 `json:"concurrently_db_ms"`
	Written  []int64   `json:"rows_written"`
	Groups   []int64   `json:"groups"`
	Modes    []string  `json:"modes"`
}

const (
	caseOne  = "1 row, 1 group"
	caseBulk = "1,000 rows, 1 day"
	// replayed follows a case: the same batch again, once applied.
	replayed = ", replayed"
)

func runIncremental(ctx context.Context, inc incremental) ([]*incCase, error) {
	v := versus{cluster: inc.cluster, rows: inc.rows}
	if err := v.createTemplate(ctx); err != nil {
		return nil, err
	}
	const db = "incremental"
	admin, err := pgx.Connect(ctx, inc.cluster.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+db+" TEMPLATE "+versusTemplate+" STRATEGY FILE_COPY")
	admin.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("copy the versus database: %w", err)
	}
	// A local socket: the wall time is the server's and little else.
	pool, err := pgxpool.New(ctx, fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable",
		db, filepath.Dir(inc.cluster.DataDir()), inc.cluster.Port()))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	defer pool.Close()
	m, err := newMeter(ctx, pool)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := pool.Exec(ctx, fmt.Sprintf(incrementalSchema, recentStart())); err != nil {
		return nil, fmt.Errorf("create the views: %w", err)
	}
	views, why, err := prepareViews(ctx, pool)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logWriter, "incremental: views ready in %.1fs; database time from %s\n", since(start), m.source())
	printEligibility(views, why)

	cases := map[string]*incCase{}
	get := func(view, kase string) *incCase {
		if cases[view+kase] == nil {
			cases[view+kase] = &incCase{View: view, Case: kase}
		}
		return cases[view+kase]
	}
	batch := func(kase string, rc replication.RelationChange, refresh bool) error {
		for _, mv := range views {
			c := get(mv.name, kase)
			for _, into := range []*incCase{c, get(mv.name, kase+replayed)} {
				var changes maintain.Changes
				changes.Follow(mv.plan, factTable, rc)
				var res maintain.Result
				wall, dbms, err := m.measure(ctx, func() error {
					return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						r, err := maintain.Maintain(ctx, tx, mv.plan, mv.timeZone, &changes, false)
						res = r
						return err
					})
				})
				if err != nil {
					return fmt.Errorf("maintain %s: %w", mv.name, err)
				}
				into.Wall, into.DB = append(into.Wall, wall), append(into.DB, dbms)
				into.Written, into.Groups, into.Modes = append(into.Written, res.Written()), append(into.Groups, res.Groups), append(into.Modes, res.Mode())
			}
			if refresh {
				wall, dbms, err := m.measure(ctx, func() error {
					_, err := pool.Exec(ctx, "REFRESH MATERIALIZED VIEW CONCURRENTLY "+mv.twin)
					return err
				})
				if err != nil {
					return fmt.Errorf("refresh %s: %w", mv.twin, err)
				}
				c.TwinWall, c.TwinDB = append(c.TwinWall, wall), append(c.TwinDB, dbms)
			}
		}
		return nil
	}
	every := max(inc.singles/max(inc.refreshes, 1), 1)
	for i := range inc.singles {
		rc, err := insertImages(ctx, pool, insertOne, i)
		if err != nil {
			return nil, err
		}
		if err := batch(caseOne, rc, i%every == every-1); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(logWriter, "incremental: %d one-row batches done after %.1fs\n", inc.singles, since(start))
	for j := range inc.bulks {
		rc, err := insertImages(ctx, pool, insertDay, j, inc.bulkRows)
		if err != nil {
			return nil, err
		}
		if err := batch(caseBulk, rc, true); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(logWriter, "incremental: %d batches of %d rows done after %.1fs\n", inc.bulks, inc.bulkRows, since(start))
	var out []*incCase
	for _, mv := range views {
		n, err := differences(ctx, pool, mv)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(logWriter, "incremental: %s and %s differ in %d rows after the last batch\n", mv.name, mv.twin, n)
		for _, kase := range []string{caseOne, caseOne + replayed, caseBulk, caseBulk + replayed} {
			out = append(out, get(mv.name, kase))
		}
	}
	printIncremental(out, m.source())
	return out, nil
}

// A recent purchase: one group of every view that follows the fact table.
const insertOne = `
INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
VALUES (now() - $1::int * interval '1 hour', ($1::int * 7919) % 50000, 200000000 + $1::int, 'purchase',
        'checkout_v2', (ARRAY['control', 'treatment'])[1 + $1::int % 2], 19.99)
RETURNING ` + factReturning

// $2 rows within one day (in the session's TimeZone, the views' too), ten
// days or more ago.
const insertDay = `
INSERT INTO core.fact_events (occurred_at, account_id, session_id, event_type, experiment, variant, amount)
SELECT date_trunc('day', now()) - (10 + $1::int) * interval '1 day' + g * (interval '86399 seconds' / $2::int),
       (g * 7919 + $1::int) % 50000, 300000000 + $1::int * 100000 + g,
       (ARRAY['visit', 'visit', 'signup', 'activate', 'purchase'])[1 + g % 5],
       CASE WHEN g % 3 = 0 THEN 'checkout_v2' END,
       CASE WHEN g % 3 = 0 THEN (ARRAY['control', 'treatment'])[1 + g % 2] END,
       CASE WHEN g % 5 = 4 THEN 19.99 ELSE 0 END
FROM generate_series(0, $2::int - 1) g
RETURNING ` + factReturning

const factReturning = `event_id::text, occurred_at::text, account_id::text, session_id::text, event_type::text,
    experiment::text, variant::text, amount::text`

// insertImages runs an insert and returns its rows as the stream hands
// them over (pgoutput's text forms; an insert carries no old row).
func insertImages(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (replication.RelationChange, error) {
	rc := replication.RelationChange{Namespace: "core", Name: "fact_events"}
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return rc, fmt.Errorf("insert into %s: %w", factTable, err)
	}
	for _, f := range rows.FieldDescriptions() {
		rc.Columns = append(rc.Columns, replication.Column{Name: f.Name})
	}
	texts := make([]*string, len(rc.Columns))
	dest := make([]any, len(texts))
	for i := range texts {
		dest[i] = &texts[i]
	}
	_, err = pgx.ForEachRow(rows, dest, func() error {
		img := replication.RowImage{Kind: 'I', New: make([]replication.Value, len(texts))}
		for i, t := range texts {
			if t == nil {
				img.New[i].Null = true
			} else {
				img.New[i].Text = *t
			}
		}
		rc.Images = append(rc.Images, img)
		return nil
	})
	if err != nil {
		return rc, fmt.Errorf("insert into %s: %w", factTable, err)
	}
	rc.Rows = len(rc.Images)
	return rc, nil
}

// meter reads the server's time for a call: the planning and execution
// time pg_stat_statements adds up for the database's statements, when the
// server loaded it.
type meter struct {
	pool  *pgxpool.Pool
	stats bool
}

func newMeter(ctx context.Context, pool *pgxpool.Pool) (*meter, error) {
	m := &meter{pool: pool}
	var loaded bool
	if err := pool.QueryRow(ctx, "SELECT 'pg_stat_statements' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))").Scan(&loaded); err != nil {
		return nil, fmt.Errorf("read shared_preload_libraries: %w", err)
	}
	if loaded {
		if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
			return nil, fmt.Errorf("create pg_stat_statements: %w", err)
		}
		m.stats = true
	}
	return m, nil
}

func (m *meter) source() string {
	if m.stats {
		return "pg_stat_statements (total_plan_time + total_exec_time)"
	}
	return "the wall time on a local socket (pg_stat_statements not loaded)"
}

// serverMS is the statements' time so far; the queries reading it are left
// out.
func (m *meter) serverMS(ctx context.Context) (float64, error) {
	var ms float64
	err := m.pool.QueryRow(ctx, `SELECT coalesce(sum(total_plan_time + total_exec_time), 0) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'`).Scan(&ms)
	if err != nil {
		return 0, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	return ms, nil
}

// measure runs fn and returns its wall time and the server's, in ms.
func (m *meter) measure(ctx context.Context, fn func() error) (wall, server float64, err error) {
	var before, after float64
	if m.stats {
		if before, err = m.serverMS(ctx); err != nil {
			return 0, 0, err
		}
	}
	start := time.Now()
	if err := fn(); err != nil {
		return 0, 0, err
	}
	wall = msOf(time.Since(start))
	if !m.stats {
		return wall, wall, nil
	}
	if after, err = m.serverMS(ctx); err != nil {
		return 0, 0, err
	}
	return wall, after - before, nil
}
