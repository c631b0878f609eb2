package maintain_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/maintain"
)

// The PostgreSQL cluster the tests share, with the roles of convertRoles:
// started on first use and stopped by TestMain.
var (
	clusterOnce     sync.Once
	startedCluster  *localpg.Cluster
	clusterStartErr error
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	code := m.Run()
	if startedCluster != nil {
		if err := startedCluster.Stop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
			return 1
		}
	}
	return code
}

// convertRoles are the roles of the conversion tests: the daemon is no
// superuser but a member of the views' owner; the stranger is a role the
// daemon is no member of; the outsider may log in but owns nothing.
const convertRoles = `
CREATE ROLE mv_owner;
CREATE ROLE mv_daemon LOGIN IN ROLE mv_owner;
CREATE ROLE mv_reader LOGIN;
CREATE ROLE mv_stranger LOGIN;
CREATE ROLE mv_outsider LOGIN;`

func sharedCluster(t *testing.T) *localpg.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if startedCluster, clusterStartErr = localpg.Start(ctx, localpg.Options{}); clusterStartErr != nil {
			return
		}
		pool, err := pgxpool.New(ctx, startedCluster.URL("postgres"))
		if err != nil {
			clusterStartErr = err
			return
		}
		defer pool.Close()
		_, clusterStartErr = pool.Exec(ctx, convertRoles)
	})
	if clusterStartErr != nil {
		t.Fatalf("the conversion tests need PostgreSQL binaries (initdb): %v", clusterStartErr)
	}
	return startedCluster
}

// convertSchema is a maintained-to-be view with every property the
// conversion carries over, and two views built on it.
const convertSchema = `
CREATE SCHEMA analytics AUTHORIZATION mv_owner;
GRANT USAGE, CREATE ON SCHEMA analytics TO mv_reader, mv_stranger;
CREATE TABLE analytics.events (id int PRIMARY KEY, account int, day date, amount numeric(12,2), note text COLLATE "C");
ALTER TABLE analytics.events OWNER TO mv_owner;
INSERT INTO analytics.events
SELECT i, i % 7, date '2026-01-01' + i % 5, i * 1.5, 'n' || i FROM generate_series(1, 200) i;
INSERT INTO analytics.events VALUES (1000, NULL, NULL, 3, NULL);
SET ROLE mv_owner;
CREATE MATERIALIZED VIEW analytics.mv_x AS
SELECT account, day, sum(amount) AS total, count(*) AS n, min(note) AS first_note
  FROM analytics.events GROUP BY account, day;
CREATE UNIQUE INDEX mv_x_account_day ON analytics.mv_x (account, day);
CREATE INDEX mv_x_busy ON analytics.mv_x (day) WHERE total > 100;
COMMENT ON INDEX analytics.mv_x_busy IS 'busy days';
COMMENT ON MATERIALIZED VIEW analytics.mv_x IS 'Revenue per account and day';
COMMENT ON COLUMN analytics.mv_x.total IS 'the day''s revenue';
GRANT SELECT ON analytics.mv_x TO mv_reader;
GRANT SELECT (account, total) ON analytics.mv_x TO mv_stranger;
REVOKE TRUNCATE ON analytics.mv_x FROM mv_owner;
ALTER MATERIALIZED VIEW analytics.mv_x SET (autovacuum_vacuum_scale_factor = 0.05);
CREATE VIEW analytics.v_big WITH (security_barrier) AS SELECT * FROM analytics.mv_x WHERE total > 10;
GRANT SELECT ON analytics.v_big TO mv_reader;
COMMENT ON VIEW analytics.v_big IS 'big ones';
CREATE MATERIALIZED VIEW analytics.mv_daily AS
SELECT b.day, sum(b.total) AS total, max(x.n) AS most FROM analytics.v_big b JOIN analytics.mv_x x USING (account, day) GROUP BY b.day;
CREATE UNIQUE INDEX mv_daily_day ON analytics.mv_daily (day);
GRANT SELECT ON analytics.mv_daily TO mv_reader;
COMMENT ON MATERIALIZED VIEW analytics.mv_daily IS 'daily';
CREATE MATERIALIZED VIEW analytics.mv_empty AS SELECT day, count(*) FROM analytics.v_big GROUP BY day WITH NO DATA;
RESET ROLE;`

// convertDB creates a database for t with convertSchema and returns pools
// connected as the superuser and as each role.
func convertDB(t *testing.T) map[string]*pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	cluster := sharedCluster(t)
	if err := cluster.CreateDatabase(ctx, t.Name()); err != nil {
		t.Fatal(err)
	}
	pools := map[string]*pgxpool.Pool{}
	for _, role := range []string{"postgres", "mv_daemon", "mv_reader", "mv_stranger", "mv_outsider"} {
		pool, err := pgxpool.New(ctx, strings.Replace(cluster.URL(t.Name()), "postgres@", role+"@", 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools[role] = pool
	}
	if _, err := pools["postgres"].Exec(ctx, convertSchema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return pools
}

// relationState is what a test compares of a relation before and after a
// conversion.
type relationState struct {
	Relkind, Owner, Definition, ACL, Comment, Options string
	Populated                                         bool
	Columns, ColumnACLs, ColumnComments, Indexes      []string
	Rows                                              []string
}

func stateOf(t *testing.T, pool *pgxpool.Pool, rel string) relationState {
	t.Helper()
	ctx := context.Background()
	var s relationState
	if err := pool.QueryRow(ctx, `
SELECT c.relkind::text, pg_get_userbyid(c.relowner)::text,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) ELSE '' END,
       coalesce(c.relacl::text, ''), coalesce(obj_description(c.oid, 'pg_class'), ''),
       coalesce(c.reloptions::text, ''), c.relispopulated,
       ARRAY(SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attcollation::regcollation::text
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT a.attname || ' ' || coalesce(a.attacl::text, '')
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT a.attname || ' ' || coalesce(col_description(c.oid, a.attnum), '')
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid) || coalesce(' -- ' || obj_description(i.indexrelid, 'pg_class'), '')
               FROM pg_index i WHERE i.indrelid = c.oid ORDER BY 1)
  FROM pg_class c WHERE c.oid = $1::regclass`, rel).Scan(&s.Relkind, &s.Owner, &s.Definition, &s.ACL, &s.Comment,
		&s.Options, &s.Populated, &s.Columns, &s.ColumnACLs, &s.ColumnComments, &s.Indexes); err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	if s.Populated {
		s.Rows = rowsOf(t, pool, "SELECT * FROM "+rel)
	}
	return s
}

func rowsOf(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	var rows []string
	if err := pool.QueryRow(context.Background(),
		"SELECT coalesce(array_agg(r::text ORDER BY r::text), '{}') FROM ("+query+") r").Scan(&rows); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return rows
}

func exists(t *testing.T, pool *pgxpool.Pool, rel string) bool {
	t.Helper()
	var found bool
	if err := pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", rel).Scan(&found); err != nil {
		t.Fatal(err)
	}
	return found
}

// the relations of convertSchema a conversion of analytics.mv_x re-creates.
var convertedRelations = []string{"analytics.mv_x", "analytics.v_big", "analytics.mv_daily", "analytics.mv_empty"}

func statesOf(t *testing.T, pool *pgxpool.Pool) map[string]relationState {
	t.Helper()
	states := map[string]relationState{}
	for _, rel := range convertedRelations {
		states[rel] = stateOf(t, pool, rel)
	}
	return states
}

func diff(t *testing.T, what string, got, want relationState) {
	t.Helper()
	if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestEnableDisable(t *testing.T) {
	ctx := context.Background()
	pools := convertDB(t)
	admin, daemon := pools["postgres"], pools["mv_daemon"]
	before := statesOf(t, admin)
	const definitionView = `analytics."mv_x__definition"`

	if err := maintain.Enable(ctx, daemon, "analytics.mv_x", []string{"account", "day"}); err != nil {
		t.Fatal(err)
	}
	enabled := statesOf(t, admin)
	want := before["analytics.mv_x"]
	want.Relkind, want.Definition = "r", ""
	want.Indexes = append(slices.Clone(want.Indexes),
		"CREATE UNIQUE INDEX mv_x__key ON analytics.mv_x USING btree (account, day) NULLS NOT DISTINCT")
	slices.Sort(want.Indexes)
	diff(t, "the maintained table", enabled["analytics.mv_x"], want)
	for _, rel := range convertedRelations[1:] {
		diff(t, rel+" over the maintained table", enabled[rel], before[rel])
	}
	if got, want := rowsOf(t, admin, "SELECT * FROM "+definitionView), before["analytics.mv_x"].Rows; !slices.Equal(got, want) {
		t.Errorf("the definition view's rows:\n got %v\nwant %v", got, want)
	}
	var comment, timeZone, defOwner string
	var daemonReads bool
	if err := daemon.QueryRow(ctx, `SELECT obj_description($1::regclass, 'pg_class'), current_setting('TimeZone'),
       pg_get_userbyid(relowner)::text, has_table_privilege('mv_daemon', $1::regclass, 'SELECT')
  FROM pg_class WHERE oid = $1::regclass`, definitionView).Scan(&comment, &timeZone, &defOwner, &daemonReads); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := maintain.ParseMarker(comment); err != nil || !ok || m != (maintain.Marker{Table: "analytics.mv_x", TimeZone: timeZone}) {
		t.Errorf("the definition view's marker: %+v %v %v, from the comment %q", m, ok, err, comment)
	}
	if defOwner != "mv_owner" || !daemonReads {
		t.Errorf("the definition view is owned by %s, readable by the daemon: %v; want mv_owner, true", defOwner, daemonReads)
	}
	readsAsBefore(t, pools, before)

	if err := maintain.Disable(ctx, daemon, "analytics.mv_x"); err != nil {
		t.Fatal(err)
	}
	for rel, s := range statesOf(t, admin) {
		diff(t, rel+" turned back", s, before[rel])
	}
	if exists(t, admin, definitionView) {
		t.Errorf("%s outlived Disable", definitionView)
	}
	readsAsBefore(t, pools, before)

	if err := maintain.Enable(ctx, daemon, "analytics.mv_x", []string{"account", "day"}); err != nil {
		t.Fatalf("Enable after Disable: %v", err)
	}
	diff(t, "the maintained table, again", stateOf(t, admin, "analytics.mv_x"), enabled["analytics.mv_x"])
}

// readsAsBefore checks that the reader and the column grantee read what
// they read before the conversion.
func readsAsBefore(t *testing.T, pools map[string]*pgxpool.Pool, before map[string]relationState) {
	t.Helper()
	for _, rel := range []string{"analytics.mv_x", "analytics.v_big", "analytics.mv_daily"} {
		if got := rowsOf(t, pools["mv_reader"], "SELECT * FROM "+rel); !slices.Equal(got, before[rel].Rows) {
			t.Errorf("mv_reader reads %s: %v, want %v", rel, got, before[rel].Rows)
		}
	}
	want := rowsOf(t, pools["postgres"], "SELECT account, total FROM analytics.mv_x")
	if got := rowsOf(t, pools["mv_stranger"], "SELECT account, total FROM analytics.mv_x"); !slices.Equal(got, want) {
		t.Errorf("mv_stranger reads its granted columns: %v, want %v", got, want)
	}
}

func TestEnableKeepsAKeyIndexThatServes(t *testing.T) {
	ctx := context.Background()
	pools := convertDB(t)
	if _, err := pools["postgres"].Exec(ctx, `
DROP INDEX analytics.mv_x_account_day;
CREATE UNIQUE INDEX mv_x_account_day ON analytics.mv_x (day, account) NULLS NOT DISTINCT`); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, pools["postgres"], "analytics.mv_x")
	if err := maintain.Enable(ctx, pools["mv_daemon"], "analytics.mv_x", []string{"account", "day"}); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, pools["postgres"], "analytics.mv_x").Indexes; !slices.Equal(got, before.Indexes) {
		t.Errorf("indexes: got %v, want the materialized view's %v", got, before.Indexes)
	}
}

func TestConvertRefusals(t *testing.T) {
	const tooLong = "analytics.mv_0123456789012345678901234567890123456789_too_long"
	for _, c := range []struct {
		name, setup, as, view string
		key                   []string
		disable               bool
		because               string
	}{
		{name: "a dependent the daemon cannot re-create", view: "analytics.mv_x",
			setup:   "SET ROLE mv_stranger; CREATE VIEW analytics.v_strangers AS SELECT account, total FROM analytics.mv_x; RESET ROLE",
			because: "analytics.v_strangers is built on it and would have to be re-created, but its owner mv_stranger is a role the current role is not a member of"},
		{name: "a dependent with a trigger", view: "analytics.mv_x",
			setup: `CREATE FUNCTION analytics.ignore() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER ignore INSTEAD OF INSERT ON analytics.v_big FOR EACH ROW EXECUTE FUNCTION analytics.ignore()`,
			because: "analytics.v_big is built on it and would have to be re-created, but it has triggers ignore"},
		{name: "a rule of a table that reads it", view: "analytics.mv_x",
			setup: `CREATE TABLE analytics.log (n bigint);
CREATE RULE count_on_insert AS ON INSERT TO analytics.log DO ALSO SELECT count(*) FROM analytics.mv_x`,
			because: "a rule of analytics.log (a table) refers to it"},
		{name: "not populated", view: "analytics.mv_empty",
			because: "analytics.mv_empty is not populated"},
		{name: "not a materialized view", view: "analytics.events",
			because: "analytics.events is a table, not a materialized view"},
		{name: "not the owner", as: "mv_outsider", view: "analytics.mv_x",
			setup:   "GRANT USAGE ON SCHEMA analytics TO mv_outsider",
			because: "the current role mv_outsider is neither the owner of analytics.mv_x nor a member of its owner mv_owner"},
		{name: "a name too long", view: tooLong,
			setup:   "CREATE MATERIALIZED VIEW " + tooLong + " AS SELECT 1 AS one; ALTER MATERIALIZED VIEW " + tooLong + " OWNER TO mv_owner",
			because: "is 52 bytes long; the longest that leaves room for the suffix __definition is 51"},
		{name: "the definition view's name taken", view: "analytics.mv_x",
			setup:   "CREATE VIEW analytics.mv_x__definition AS SELECT 1 AS one",
			because: "analytics.mv_x__definition exists already"},
		{name: "no such key column", view: "analytics.mv_x", key: []string{"Account"},
			because: `the key column "Account" is not a column of the view`},
		{name: "a key that is not unique", view: "analytics.mv_x", key: []string{"day"},
			because: "could not create unique index"},
		{name: "turning off a table never turned on", view: "analytics.events", disable: true,
			because: "analytics.events is a table without a definition view analytics.events__definition"},
		{name: "turning off a materialized view", view: "analytics.mv_x", disable: true,
			because: "analytics.mv_x is a materialized view, not a table"},
		{name: "turning off a table next to a view of the same name", view: "analytics.events", disable: true,
			setup:   "CREATE VIEW analytics.events__definition AS SELECT 1 AS one",
			because: "analytics.events__definition is not a definition view mvrefresher made"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			pools := convertDB(t)
			admin := pools["postgres"]
			if c.setup != "" {
				if _, err := admin.Exec(ctx, c.setup); err != nil {
					t.Fatal(err)
				}
			}
			as, key := pools["mv_daemon"], []string{"account", "day"}
			if c.as != "" {
				as = pools[c.as]
			}
			if c.key != nil {
				key = c.key
			}
			before := statesOf(t, admin)
			beforeView := stateOf(t, admin, c.view)
			definitionBefore := exists(t, admin, c.view+"__definition")
			var err error
			if c.disable {
				err = maintain.Disable(ctx, as, c.view)
			} else {
				err = maintain.Enable(ctx, as, c.view, key)
			}
			if err == nil || !strings.Contains(err.Error(), c.because) {
				t.Fatalf("got %v, want an error saying %q", err, c.because)
			}
			if c.key == nil && !errors.Is(err, maintain.ErrRefused) {
				t.Errorf("%v is not ErrRefused", err)
			}
			for rel, s := range statesOf(t, admin) {
				diff(t, rel+" after the refusal", s, before[rel])
			}
			diff(t, c.view+" after the refusal", stateOf(t, admin, c.view), beforeView)
			if exists(t, admin, c.view+"__definition") != definitionBefore {
				t.Errorf("the refusal changed whether %s__definition exists", c.view)
			}
		})
	}
}

// holdRead reads relation in a transaction left open, holding its lock
// until the test rolls it back, or ends.
func holdRead(t *testing.T, pool *pgxpool.Pool, relation string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	reading, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reading.Rollback(ctx) })
	if _, err := reading.Exec(ctx, "SELECT FROM "+relation+" LIMIT 1"); err != nil {
		t.Fatal(err)
	}
	return reading
}

func TestEnableGivesUpOnABusyView(t *testing.T) {
	ctx := context.Background()
	pools := convertDB(t)
	reading := holdRead(t, pools["mv_reader"], "analytics.mv_x")
	before := statesOf(t, pools["postgres"])
	err := maintain.Enable(ctx, pools["mv_daemon"], "analytics.mv_x", []string{"account", "day"})
	if want := "is in use (a long query or a refresh holds it) and stayed so for 5s"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying %q", err, want)
	}
	if err := reading.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for rel, s := range statesOf(t, pools["postgres"]) {
		diff(t, rel+" after giving up", s, before[rel])
	}
}

// Two instances of an HA pair starting together convert a view once: the
// second waits for the first's conversion, however long it takes (not for
// the view, under the conversion's lock timeout), then finds the view
// converted and refuses. The first is held here in the middle of its
// conversion by a reader of a view it re-creates.
func TestEnableWaitsForAnotherConversionOfTheView(t *testing.T) {
	ctx := context.Background()
	pools := convertDB(t)
	reading := holdRead(t, pools["mv_reader"], "analytics.mv_daily")
	enable := func() <-chan error {
		done := make(chan error, 1)
		go func() { done <- maintain.Enable(ctx, pools["mv_daemon"], "analytics.mv_x", []string{"account", "day"}) }()
		return done
	}
	// waiting awaits a conversion waiting for a lock of the kind, well
	// within the 5 s lock timeout the first conversion runs under.
	waiting := func(what, condition string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			var n int
			if err := pools["postgres"].QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE NOT l.granted AND a.usename = 'mv_daemon' AND `+condition).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no conversion waits for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	first := enable()
	waiting("analytics.mv_daily, which it re-creates", "l.relation = 'analytics.mv_daily'::regclass")
	second := enable()
	waiting("the first conversion", "l.locktype = 'advisory'")
	if err := reading.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("the first conversion: %v", err)
	}
	if err := <-second; !errors.Is(err, maintain.ErrRefused) || !strings.Contains(err.Error(), "analytics.mv_x") {
		t.Fatalf("the second conversion: %v; want it refused, the view being a table already", err)
	}
	if s := stateOf(t, pools["postgres"], "analytics.mv_x"); s.Relkind != "r" {
		t.Fatalf("analytics.mv_x has relkind %q after the conversions", s.Relkind)
	}
}
