package catalog_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// The PostgreSQL cluster the discovery tests share: started on first use, so
// the pure tests and the fuzz targets run without it, and stopped by TestMain.
var (
	clusterOnce     sync.Once
	startedCluster  *localpg.Cluster
	clusterStartErr error
)

// TestMain stops the shared cluster if a test started it.
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

// sharedCluster returns the PostgreSQL cluster the tests share, starting it
// on first use; it fails the test if the cluster could not start, and skips
// it under -short (make unit), which runs only the tests that need no server.
func sharedCluster(t *testing.T) *localpg.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		startedCluster, clusterStartErr = localpg.Start(ctx, localpg.Options{})
	})
	if clusterStartErr != nil {
		t.Fatalf("discovery tests need PostgreSQL binaries (initdb): %v", clusterStartErr)
	}
	return startedCluster
}

func newDB(t *testing.T, sql string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	cluster := sharedCluster(t)
	if err := cluster.CreateDatabase(ctx, t.Name()); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, sql); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return pool
}

func oid(t *testing.T, pool *pgxpool.Pool, rel string) uint32 {
	t.Helper()
	var o uint32
	if err := pool.QueryRow(context.Background(), "SELECT $1::regclass::oid", rel).Scan(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

const discoverySchema = `
CREATE SCHEMA a; CREATE SCHEMA other;
CREATE TABLE a.facts (id int, region text, day date, n int, PRIMARY KEY (id, region, day)) PARTITION BY LIST (region);
CREATE TABLE a.facts_eu PARTITION OF a.facts FOR VALUES IN ('eu') PARTITION BY RANGE (day);
CREATE TABLE a.facts_eu_2026 PARTITION OF a.facts_eu FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE a.facts_us PARTITION OF a.facts FOR VALUES IN ('us');
CREATE TABLE a.dim (id int PRIMARY KEY, name text);
CREATE UNLOGGED TABLE a.scratch (id int PRIMARY KEY);
CREATE VIEW a.v1 AS SELECT f.*, d.name FROM a.facts f JOIN a.dim d USING (id);
CREATE VIEW a.v2 AS SELECT * FROM a.v1 WHERE n > 0;

CREATE MATERIALIZED VIEW a.mv_base AS SELECT id, sum(n) AS n FROM a.v2 GROUP BY id;
CREATE UNIQUE INDEX ON a.mv_base (id);
CREATE VIEW a.v_over_base AS SELECT * FROM a.mv_base;
CREATE MATERIALIZED VIEW a."Top ""Level"".mv" AS SELECT count(*) AS c FROM a.v_over_base, a.scratch;
CREATE UNIQUE INDEX ON a."Top ""Level"".mv" (c);
CREATE MATERIALIZED VIEW a.mv_partial AS SELECT id FROM a.dim;
CREATE UNIQUE INDEX ON a.mv_partial (id) WHERE id > 0;
CREATE MATERIALIZED VIEW a.mv_expr AS SELECT id FROM a.dim;
CREATE UNIQUE INDEX ON a.mv_expr ((id + 1));
CREATE MATERIALIZED VIEW other.mv_elsewhere AS SELECT count(*) AS c FROM a.dim;
CREATE MATERIALIZED VIEW a.mv_over_elsewhere AS SELECT c FROM other.mv_elsewhere;
CREATE MATERIALIZED VIEW a.mv_disabled AS SELECT count(*) FROM a.dim;
`

func TestDiscover(t *testing.T) {
	pool := newDB(t, discoverySchema)
	cat, err := catalog.Discover(context.Background(), pool, catalog.DiscoverOptions{
		Schemas: []string{"a"},
		Enabled: func(name string) bool { return name != "a.mv_disabled" },
	})
	if err != nil {
		t.Fatal(err)
	}
	top := `a."Top ""Level"".mv"`
	if got, want := cat.Names(), []string{top, "a.mv_base", "a.mv_expr", "a.mv_over_elsewhere", "a.mv_partial"}; !slices.Equal(got, want) {
		t.Fatalf("managed views %q, want %q", got, want)
	}

	base := cat.Views["a.mv_base"]
	if got := base.SourceNames(); !slices.Equal(sorted(got), []string{"a.dim", "a.facts"}) {
		t.Errorf("mv_base sources %q, want a.dim and a.facts (through two plain views)", got)
	}
	if !base.UniqueIndex {
		t.Error("mv_base has a plain unique index, but UniqueIndex is false")
	}
	for _, name := range []string{"a.mv_partial", "a.mv_expr"} {
		if cat.Views[name].UniqueIndex {
			t.Errorf("%s: a partial or expression unique index cannot serve CONCURRENTLY, but UniqueIndex is true", name)
		}
	}
	if got := cat.Views[top].Bases; !slices.Equal(got, []string{"a.mv_base"}) {
		t.Errorf("top bases %q, want a.mv_base (through a plain view)", got)
	}
	if got := cat.Dependents("a.mv_base"); !slices.Equal(got, []string{top}) {
		t.Errorf("mv_base dependents %q", got)
	}
	if got := cat.Views["a.mv_over_elsewhere"].Unmanaged; !slices.Equal(got, []string{"other.mv_elsewhere"}) {
		t.Errorf("unmanaged bases %q", got)
	}
	if !hasProblem(cat.Warnings, top, "unlogged-source") || !hasProblem(cat.Warnings, "a.mv_over_elsewhere", "unmanaged-base") {
		t.Errorf("warnings %+v lack unlogged-source for %s and unmanaged-base", cat.Warnings, top)
	}

	var published []string
	for _, tb := range cat.PublishedTables() {
		published = append(published, tb.Name)
	}
	if !slices.Equal(published, []string{"a.dim", "a.facts"}) {
		t.Errorf("published %q, want the partition root and the dimension (never the unlogged table)", published)
	}

	// A change to a second-level partition reaches the views of the root.
	views, source, known := cat.Route(oid(t, pool, "a.facts_eu_2026"))
	if !known || source != "a.facts" || !slices.Equal(views, []string{"a.mv_base"}) {
		t.Errorf("Route(facts_eu_2026) = %q, %q, %v; want [a.mv_base], a.facts, true", views, source, known)
	}
	if _, _, known := cat.Route(oid(t, pool, "a.scratch")); !known {
		t.Error("Route(scratch): a source should be known even if it is not published")
	}

	// A view found by name, as a refresh request names it.
	if v, _ := cat.Lookup("a", `Top "Level".mv`); v == nil || v.Name != top {
		t.Errorf("Lookup of the quoted view: %+v", v)
	}
	if _, tb := cat.Lookup("a", "dim"); tb == nil || tb.Name != "a.dim" {
		t.Errorf("Lookup of a.dim: %+v", tb)
	}
}

func TestDiscover_ReplicaIdentityOfPartitionTrees(t *testing.T) {
	pool := newDB(t, `
		CREATE TABLE p (id int, k int) PARTITION BY RANGE (k);   -- no key on the root
		CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);
		CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (10) TO (20);
		ALTER TABLE p1 REPLICA IDENTITY FULL;
		CREATE MATERIALIZED VIEW mv_p AS SELECT count(*) AS c FROM p;`)
	discover := func() *catalog.Catalog {
		cat, err := catalog.Discover(context.Background(), pool, catalog.DiscoverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cat
	}
	cat := discover()
	if cat.Views["public.mv_p"] != nil || !hasProblem(cat.Excluded, "public.mv_p", "no-replica-identity") {
		t.Fatalf("a partition without replica identity must exclude the view: views %q excluded %+v", cat.Names(), cat.Excluded)
	}
	if _, err := pool.Exec(context.Background(), "ALTER TABLE p2 REPLICA IDENTITY FULL"); err != nil {
		t.Fatal(err)
	}
	if cat := discover(); cat.Views["public.mv_p"] == nil {
		t.Fatalf("every leaf has an identity now: the view should be managed (excluded %+v)", cat.Excluded)
	}
}

func hasProblem(ps []catalog.Problem, view, code string) bool {
	for _, p := range ps {
		if p.View == view && p.Code == code {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestDiscover_ViewsTheRoleCannotRefresh(t *testing.T) {
	pool := newDB(t, `
		CREATE ROLE discover_limited LOGIN;
		CREATE TABLE t (id int PRIMARY KEY);
		GRANT SELECT ON t TO discover_limited;
		CREATE MATERIALIZED VIEW mv_theirs AS SELECT count(*) AS n FROM t;
		CREATE MATERIALIZED VIEW mv_mine AS SELECT count(*) AS n FROM t;
		ALTER MATERIALIZED VIEW mv_mine OWNER TO discover_limited;
		CREATE ROLE discover_team;
		CREATE MATERIALIZED VIEW mv_team AS SELECT count(*) AS n FROM t;
		ALTER MATERIALIZED VIEW mv_team OWNER TO discover_team;`)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP OWNED BY discover_limited, discover_team; DROP ROLE discover_limited; DROP ROLE discover_team")
	})
	limited, err := pgxpool.New(context.Background(), strings.Replace(sharedCluster(t).URL(t.Name()), "postgres@", "discover_limited@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	cat, err := catalog.Discover(context.Background(), limited, catalog.DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cat.Names(); !slices.Equal(got, []string{"public.mv_mine"}) {
		t.Errorf("managed views %q, want only the one the role owns", got)
	}
	// The fix names the role. Membership in the bootstrap superuser that
	// owns mv_theirs would make the role a superuser: not that fix there.
	// From PostgreSQL 17 on, the MAINTAIN privilege is enough.
	want := map[string][]string{
		"public.mv_theirs": {"ALTER MATERIALIZED VIEW public.mv_theirs OWNER TO discover_limited", "granting postgres to discover_limited would make it a superuser"},
		"public.mv_team":   {"GRANT discover_team TO discover_limited", "ALTER MATERIALIZED VIEW public.mv_team OWNER TO discover_limited"},
	}
	var version int
	if err := pool.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version >= 170000 {
		for view, fixes := range want {
			want[view] = append(fixes, "GRANT MAINTAIN ON "+view+" TO discover_limited")
		}
	}
	for view, fixes := range want {
		i := slices.IndexFunc(cat.Excluded, func(p catalog.Problem) bool { return p.View == view && p.Code == "not-owner" })
		if i < 0 {
			t.Errorf("excluded %+v: want not-owner for %s", cat.Excluded, view)
			continue
		}
		msg := cat.Excluded[i].Message
		for _, fix := range fixes {
			if !strings.Contains(msg, fix) {
				t.Errorf("%s: %q lacks %q", view, msg, fix)
			}
		}
		if strings.Contains(msg, "GRANT postgres") {
			t.Errorf("%s: %q suggests making the role a superuser", view, msg)
		}
	}
}
