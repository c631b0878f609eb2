package maintain_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/replication"
)

// oracleSchema is a fact table, a dimension, and a view of each shape the
// maintenance follows. The timestamps straddle the daylight saving changes
// of the time zone the tests run in.
const oracleSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.accounts (id int PRIMARY KEY, plan text, region text);
CREATE TABLE shop.events (id bigint PRIMARY KEY, account_id int, kind text, amount numeric, occurred_at timestamptz, session text);
ALTER TABLE shop.accounts REPLICA IDENTITY FULL;
ALTER TABLE shop.events REPLICA IDENTITY FULL;
CREATE INDEX ON shop.events (occurred_at);
CREATE INDEX ON shop.events (account_id);
CREATE INDEX ON shop.events ((account_id % 7));
CREATE INDEX ON shop.accounts (plan);
INSERT INTO shop.accounts SELECT g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END, 'r' || (g % 4) FROM generate_series(1, 30) g;
INSERT INTO shop.events SELECT g, g % 30 + 1, 'k' || (g % 4), g % 17, timestamptz '2026-03-27 12:00+01' + g * interval '37 minutes', 's' || (g % 53)
  FROM generate_series(1, 3000) g;
CREATE MATERIALIZED VIEW shop.daily AS
  SELECT date_trunc('day', occurred_at) AS day, sum(amount) AS revenue, count(*) AS n, avg(amount) AS mean
  FROM shop.events WHERE kind <> 'k0' GROUP BY 1 HAVING count(*) > 1;
CREATE MATERIALIZED VIEW shop.per_account_day AS
  SELECT account_id, occurred_at::date AS day, count(*) AS n, min(amount) AS low, max(amount) AS high
  FROM shop.events GROUP BY account_id, occurred_at::date;
CREATE MATERIALIZED VIEW shop.sessions AS
  SELECT date_trunc('hour', occurred_at) AS hour, kind, count(DISTINCT session) AS sessions,
         count(*) FILTER (WHERE amount > 8) AS big
  FROM shop.events GROUP BY 1, 2;
CREATE MATERIALIZED VIEW shop.per_plan AS
  SELECT a.plan, e.occurred_at::date AS day, count(*) AS n, sum(e.amount) AS revenue
  FROM shop.events e JOIN shop.accounts a ON a.id = e.account_id GROUP BY a.plan, e.occurred_at::date;
CREATE MATERIALIZED VIEW shop.buckets AS
  SELECT account_id % 7 AS bucket, count(*) AS n FROM shop.events GROUP BY account_id % 7;
CREATE MATERIALIZED VIEW shop.purchases AS
  SELECT e.id, e.amount, e.occurred_at, a.plan
  FROM shop.events e LEFT JOIN shop.accounts a ON a.id = e.account_id WHERE e.kind = 'k2';`

var oracleViews = []string{"shop.daily", "shop.per_account_day", "shop.sessions", "shop.per_plan", "shop.buckets", "shop.purchases"}

// oracle is a database where the views are maintained, and the row
// changes of the transactions the test runs, as the WAL would carry them
// under REPLICA IDENTITY FULL.
type oracle struct {
	t     *testing.T
	url   string
	pool  *pgxpool.Pool
	plans map[string]*maintain.Plan
	zones map[string]string
	// statements counts the random statements run.
	statements int
}

func newOracle(t *testing.T, db string) *oracle {
	t.Helper()
	return newOracleOf(t, db, oracleSchema, oracleViews)
}

// newOracleOf creates database db with schema and maintains views, in
// time zone Europe/Paris.
func newOracleOf(t *testing.T, db, schema string, views []string) *oracle {
	t.Helper()
	return newOracleWith(t, db, schema, views, map[string]string{"timezone": "Europe/Paris"})
}

// newOracleWith creates database db with schema and maintains views, with
// the sessions' settings params.
func newOracleWith(t *testing.T, db, schema string, views []string, params map[string]string) *oracle {
	t.Helper()
	ctx := context.Background()
	cluster := sharedCluster(t)
	if err := cluster.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	o := &oracle{t: t, url: cluster.URL(db), plans: map[string]*maintain.Plan{}, zones: map[string]string{}}
	o.pool = o.connect(params)
	if _, err := o.pool.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	o.enable(ctx, o.pool, views)
	return o
}

// connect opens a pool to the oracle's database with the sessions'
// settings params.
func (o *oracle) connect(params map[string]string) *pgxpool.Pool {
	o.t.Helper()
	cfg, err := pgxpool.ParseConfig(o.url)
	if err != nil {
		o.t.Fatal(err)
	}
	maps.Copy(cfg.ConnConfig.RuntimeParams, params)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(pool.Close)
	return pool
}

// enable converts views, in order, through pool (the time zone of its
// sessions is theirs), and plans their maintenance.
func (o *oracle) enable(ctx context.Context, pool *pgxpool.Pool, views []string) {
	t := o.t
	t.Helper()
	for _, v := range views {
		var oid uint32
		if err := pool.QueryRow(ctx, "SELECT $1::regclass::oid", v).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		plan, err := maintain.Analyze(ctx, pool, v, oid)
		if err != nil {
			t.Fatalf("analyze %s: %v", v, err)
		}
		var key []string
		for _, k := range plan.Key {
			key = append(key, plan.Columns[k].Name)
		}
		if err := maintain.Enable(ctx, pool, v, key); err != nil {
			t.Fatalf("enable %s: %v", v, err)
		}
		var defOID uint32
		var comment string
		if err := pool.QueryRow(ctx, "SELECT c.oid, obj_description(c.oid, 'pg_class') FROM pg_class c WHERE c.oid = ($1 || '__definition')::regclass", v).Scan(&defOID, &comment); err != nil {
			t.Fatal(err)
		}
		if o.plans[v], err = maintain.Analyze(ctx, pool, v, defOID); err != nil {
			t.Fatalf("analyze %s once maintained: %v", v, err)
		}
		m, ok, err := maintain.ParseMarker(comment)
		if !ok || err != nil {
			t.Fatalf("the definition of %s carries no marker: %q, %v", v, comment, err)
		}
		o.zones[v] = m.TimeZone
	}
}

// change is a transaction's row changes to one table, as the stream hands
// them over.
type change struct {
	table string
	rc    replication.RelationChange
}

// exec runs sql, which must end in RETURNING old-row-then-new-row columns
// as oracle's queries do, and records the row changes.
func (o *oracle) exec(ctx context.Context, tx pgx.Tx, table string, kind byte, sql string, args ...any) change {
	o.t.Helper()
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		o.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	width := len(fields)
	if kind == 'U' {
		width /= 2
	}
	// The oracle's tables are REPLICA IDENTITY FULL: every column is in
	// the identity.
	ch := change{table: table}
	ch.rc.ReplicaIdentity = 'f'
	for i := 0; i < width; i++ {
		ch.rc.Columns = append(ch.rc.Columns, replication.Column{Name: fields[i].Name, Key: true})
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			o.t.Fatal(err)
		}
		text := func(vs []any) []replication.Value {
			out := make([]replication.Value, len(vs))
			for i, v := range vs {
				if v == nil {
					out[i].Null = true
				} else {
					out[i].Text = v.(string)
				}
			}
			return out
		}
		img := replication.RowImage{Kind: kind}
		switch kind {
		case 'I':
			img.New = text(vals)
		case 'D':
			img.OldKind, img.Old = 'O', text(vals)
		case 'U':
			img.OldKind, img.Old, img.New = 'O', text(vals[:width]), text(vals[width:])
		}
		ch.rc.Images = append(ch.rc.Images, img)
		ch.rc.Rows++
	}
	if err := rows.Err(); err != nil {
		o.t.Fatalf("%s: %v", sql, err)
	}
	return ch
}

var oracleColumns = map[string][]string{
	"shop.events":   {"id", "account_id", "kind", "amount", "occurred_at", "session"},
	"shop.accounts": {"id", "plan", "region"},
}

// returning lists table's columns as text, qualified by alias.
func returning(table, alias string) string {
	var out []string
	for _, c := range oracleColumns[table] {
		out = append(out, fmt.Sprintf("%s.%s::text AS %s", alias, c, c))
	}
	return strings.Join(out, ", ")
}

// randomStatement runs one random statement in tx and returns its changes.
func (o *oracle) randomStatement(ctx context.Context, tx pgx.Tx, rng *rand.Rand, nextID *int64) change {
	o.statements++
	when := func() string {
		// Mostly recent rows; some late ones for old buckets; the range
		// holds both daylight saving changes of 2026 in Europe/Paris.
		base := "2026-03-27 12:00+01"
		if rng.IntN(10) == 0 {
			base = "2026-10-20 00:00+02"
		}
		return fmt.Sprintf("timestamptz '%s' + interval '%d minutes'", base, rng.IntN(60*24*12))
	}
	amount := func() any {
		if rng.IntN(15) == 0 {
			return nil
		}
		return fmt.Sprintf("%d.%d", rng.IntN(20), rng.IntN(3)*5)
	}
	account := func() int { return rng.IntN(34) + 1 } // some have no account row
	// Random choices come from rng, never from the server's random(), so
	// that a seed replays the same stream.
	anyEvent := func() string {
		return fmt.Sprintf("(SELECT id FROM shop.events ORDER BY id OFFSET %d %% greatest((SELECT count(*) FROM shop.events), 1) LIMIT 1)", rng.IntN(1<<20))
	}
	switch op := rng.IntN(20); {
	case op < 7:
		*nextID++
		return o.exec(ctx, tx, "shop.events", 'I', fmt.Sprintf(`INSERT INTO shop.events VALUES ($1, $2, $3, $4::numeric, %s, $5) RETURNING %s`, when(), returning("shop.events", "events")),
			*nextID, account(), fmt.Sprintf("k%d", rng.IntN(4)), amount(), fmt.Sprintf("s%d", rng.IntN(60)))
	case op < 12:
		sets := []string{
			"kind = 'k" + fmt.Sprint(rng.IntN(4)) + "'",
			"occurred_at = " + when(),
			"account_id = " + fmt.Sprint(account()),
			"session = 's" + fmt.Sprint(rng.IntN(60)) + "'",
		}
		rng.Shuffle(len(sets), func(i, j int) { sets[i], sets[j] = sets[j], sets[i] })
		set := strings.Join(sets[:rng.IntN(2)+1], ", ") + ", amount = $1::numeric"
		return o.exec(ctx, tx, "shop.events", 'U', fmt.Sprintf(`UPDATE shop.events e SET %s FROM (SELECT * FROM shop.events WHERE id IN (%s, %s) FOR UPDATE) old
			WHERE e.id = old.id RETURNING %s, %s`, set, anyEvent(), anyEvent(), returning("shop.events", "old"), returning("shop.events", "e")), amount())
	case op < 15:
		return o.exec(ctx, tx, "shop.events", 'D', fmt.Sprintf(`DELETE FROM shop.events WHERE id = %s RETURNING %s`, anyEvent(), returning("shop.events", "events")))
	case op < 18:
		plans := []any{"free", "pro", "team", nil}
		return o.exec(ctx, tx, "shop.accounts", 'U', fmt.Sprintf(`UPDATE shop.accounts a SET plan = $2
			FROM (SELECT * FROM shop.accounts WHERE id = $1 FOR UPDATE) old WHERE a.id = old.id RETURNING %s, %s`, returning("shop.accounts", "old"), returning("shop.accounts", "a")),
			account(), plans[rng.IntN(len(plans))])
	case op < 19:
		return o.exec(ctx, tx, "shop.accounts", 'I', fmt.Sprintf(`INSERT INTO shop.accounts VALUES ($1, 'pro', 'r9') ON CONFLICT DO NOTHING RETURNING %s`, returning("shop.accounts", "accounts")), account())
	default:
		return o.exec(ctx, tx, "shop.accounts", 'D', fmt.Sprintf(`DELETE FROM shop.accounts WHERE id = $1 RETURNING %s`, returning("shop.accounts", "accounts")), account())
	}
}

// randomBatch runs a few transactions, some rolled back in part or whole,
// and returns the changes of what committed, in commit order.
func (o *oracle) randomBatch(ctx context.Context, rng *rand.Rand, nextID *int64) []change {
	var committed []change
	for range rng.IntN(6) + 1 {
		tx, err := o.pool.Begin(ctx)
		if err != nil {
			o.t.Fatal(err)
		}
		// A failing statement ends the test: its transaction must end too,
		// or the pool's Close waits for it.
		defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit it is a no-op
		// The rows come in the text forms the walsender prints them in
		// (replication.Connect), whatever the pool's.
		if _, err := tx.Exec(ctx, "SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL extra_float_digits = 3"); err != nil {
			o.t.Fatal(err)
		}
		var changes []change
		for range rng.IntN(4) + 1 {
			if rng.IntN(6) == 0 {
				if _, err := tx.Exec(ctx, "SAVEPOINT s"); err != nil {
					o.t.Fatal(err)
				}
				o.randomStatement(ctx, tx, rng, nextID)
				if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s"); err != nil {
					o.t.Fatal(err)
				}
				continue
			}
			changes = append(changes, o.randomStatement(ctx, tx, rng, nextID))
		}
		if rng.IntN(8) == 0 {
			if err := tx.Rollback(ctx); err != nil {
				o.t.Fatal(err)
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			o.t.Fatal(err)
		}
		committed = append(committed, changes...)
	}
	return committed
}

// maintain follows changes in view and checks it then equals its
// definition; then follows them again (a replay) and checks that wrote
// nothing.
func (o *oracle) maintain(ctx context.Context, view string, changes []change) maintain.Result {
	o.t.Helper()
	plan := o.plans[view]
	var c maintain.Changes
	for _, ch := range changes {
		if plan.Sources[ch.table] != nil { // the stream routes a change only to the views reading its table
			c.Follow(plan, ch.table, ch.rc)
		}
	}
	res := o.run(ctx, view, &c, false)
	if diff := o.differences(ctx, view); diff != "" {
		o.t.Fatalf("%s differs from its definition after a maintenance (%+v):\n%s", view, res, diff)
	}
	if replay := o.run(ctx, view, &c, false); replay.Written() != 0 {
		o.t.Fatalf("%s: replaying the changes wrote %+v", view, replay)
	}
	return res
}

// run maintains view from c in a transaction of its own; with name, the
// result names the rows recomputed.
func (o *oracle) run(ctx context.Context, view string, c *maintain.Changes, name bool) maintain.Result {
	o.t.Helper()
	var res maintain.Result
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		var err error
		res, err = maintain.Maintain(ctx, tx, o.plans[view], o.zones[view], c, name)
		return err
	})
	if err != nil {
		o.t.Fatalf("maintain %s: %v", view, err)
	}
	return res
}

// differences lists the rows in one of the view and its definition (under
// the view's time zone) and not the other, "" when they are equal.
func (o *oracle) differences(ctx context.Context, view string) string {
	o.t.Helper()
	def := view + "__definition"
	var lines []string
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('TimeZone', $1, true)", o.zones[view]); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT 'extra ' || x::text FROM (TABLE %s EXCEPT ALL TABLE %s) x
		UNION ALL SELECT 'missing ' || x::text FROM (TABLE %[2]s EXCEPT ALL TABLE %[1]s) x`, view, def))
		if err != nil {
			return err
		}
		lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		o.t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestMaintainOracle runs a seeded random stream of changes (inserts,
// updates moving rows between groups, deletes, dimension changes, rolled
// back transactions and savepoints, late rows) and checks after every
// batch that each maintained view equals its definition, and that
// replaying the batch writes nothing. MVREFRESHER_ORACLE_SEED replays a
// failing seed; MVREFRESHER_ORACLE_BATCHES runs longer.
func TestMaintainOracle(t *testing.T) {
	ctx := context.Background()
	o := newOracle(t, "oracle")
	seed := envInt(t, "MVREFRESHER_ORACLE_SEED", 1)
	batches := envInt(t, "MVREFRESHER_ORACLE_BATCHES", 350)
	t.Logf("seed %d, %d batches (MVREFRESHER_ORACLE_SEED, MVREFRESHER_ORACLE_BATCHES)", seed, batches)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	nextID := int64(100000)
	incremental := map[string]int{}
	for b := range batches {
		changes := o.randomBatch(ctx, rng, &nextID)
		if b == batches/2 {
			// A TRUNCATE names no rows: the next maintenance is full.
			if _, err := o.pool.Exec(ctx, "TRUNCATE shop.events"); err != nil {
				t.Fatal(err)
			}
			changes = append(changes, change{table: "shop.events", rc: replication.RelationChange{Truncated: true}})
		}
		for _, v := range oracleViews {
			res := o.maintain(ctx, v, changes)
			if res.Full == "" && len(changes) > 0 {
				incremental[v]++
			} else if res.Full != "" && testing.Verbose() {
				t.Logf("batch %d, %s recomputed whole: %s", b, v, res.Full)
			}
		}
	}
	t.Logf("%d random statements in %d batches", o.statements, batches)
	for _, v := range oracleViews {
		t.Logf("%s: %d of %d maintenances followed the changed rows", v, incremental[v], batches)
		if incremental[v] == 0 {
			t.Errorf("%s was never maintained from the changed rows: every maintenance recomputed it whole", v)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
