package maintain_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/replication"
)

// chainSchema adds to the oracle's tables maintained views built on
// maintained views: shop.account_days (per account per day, from the fact
// table alone, so its changed rows name whole rows of it) and the views
// built on it, and shop.plan_daily, whose plan comes from a dimension.
// Some events have no account: their rows of shop.account_days have a
// NULL key.
const chainSchema = oracleSchema + `
UPDATE shop.events SET account_id = NULL WHERE id % 50 = 0;
CREATE MATERIALIZED VIEW shop.account_days AS
  SELECT account_id, date_trunc('day', occurred_at) AS day, count(*) AS n, sum(amount) AS revenue
  FROM shop.events GROUP BY account_id, date_trunc('day', occurred_at);
CREATE INDEX ON shop.account_days (day);
CREATE INDEX ON shop.account_days (account_id);
CREATE INDEX ON shop.account_days (n);
CREATE MATERIALIZED VIEW shop.days AS
  SELECT day, sum(n) AS n, count(*) AS accounts FROM shop.account_days GROUP BY day;
CREATE MATERIALIZED VIEW shop.months AS
  SELECT date_trunc('month', day) AS month, sum(n) AS n, sum(revenue) AS revenue, count(*) AS account_days
  FROM shop.account_days GROUP BY date_trunc('month', day);
CREATE MATERIALIZED VIEW shop.account_totals AS
  SELECT account_id, sum(n) AS n, max(day) AS last_day FROM shop.account_days GROUP BY account_id;
CREATE MATERIALIZED VIEW shop.plan_days AS
  SELECT a.plan, d.day, sum(d.n) AS n
  FROM shop.account_days d JOIN shop.accounts a ON a.id = d.account_id GROUP BY a.plan, d.day;
CREATE MATERIALIZED VIEW shop.sizes AS
  SELECT n AS size, count(*) AS account_days FROM shop.account_days GROUP BY n;
CREATE MATERIALIZED VIEW shop.plan_daily AS
  SELECT a.plan, e.occurred_at::date AS day, count(*) AS n
  FROM shop.events e JOIN shop.accounts a ON a.id = e.account_id GROUP BY a.plan, e.occurred_at::date;
CREATE INDEX ON shop.plan_daily (plan);
CREATE MATERIALIZED VIEW shop.plans AS
  SELECT plan, sum(n) AS n FROM shop.plan_daily GROUP BY plan;`

// chainBases are the maintained views others are built on, and theirs.
var chainBases = map[string][]string{
	"shop.account_days": {"shop.days", "shop.months", "shop.account_totals", "shop.plan_days", "shop.sizes"},
	"shop.plan_daily":   {"shop.plans"},
}

// TestMaintainChain maintains views built on maintained views from the
// rows the bases' maintenances name, over a seeded random stream of
// changes: after every batch each equals its definition, and a replayed
// batch (the base replayed, then the dependent from the rows the replay
// names) writes nothing. Every fourth batch is a crash between the base's
// commit and its dependents': only the replay's named rows reach them,
// and the replay wrote nothing, so following the rows a base wrote would
// leave them stale. The bases are computed in Asia/Kolkata, their
// dependents in UTC, with DateStyle SQL: a day printed with its zone's
// abbreviation (IST) would read back as Israel's. Every fifth batch has
// an event of no account, which names a row of shop.account_days by a
// NULL key. MVREFRESHER_ORACLE_SEED and MVREFRESHER_ORACLE_BATCHES replay
// a seed or run longer, as for TestMaintainOracle.
func TestMaintainChain(t *testing.T) {
	ctx := context.Background()
	settings := map[string]string{"DateStyle": "SQL, DMY", "timezone": "Asia/Kolkata"}
	o := newOracleWith(t, "chain", chainSchema, []string{"shop.account_days", "shop.plan_daily"}, settings)
	settings["timezone"] = "UTC"
	o.enable(ctx, o.connect(settings), []string{"shop.days", "shop.months", "shop.account_totals", "shop.plan_days", "shop.sizes", "shop.plans"})

	seed := envInt(t, "MVREFRESHER_ORACLE_SEED", 1)
	batches := envInt(t, "MVREFRESHER_ORACLE_BATCHES", 120)
	t.Logf("seed %d, %d batches (MVREFRESHER_ORACLE_SEED, MVREFRESHER_ORACLE_BATCHES)", seed, batches)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	nextID := int64(100000)
	incremental := map[string]int{}
	stale := 0
	for b := range batches {
		changes := o.randomBatch(ctx, rng, &nextID)
		withoutAccount := b%5 == 1
		if withoutAccount {
			changes = append(changes, o.insertWithoutAccount(ctx, &nextID))
		}
		truncated := b == batches/2
		if truncated {
			if _, err := o.pool.Exec(ctx, "TRUNCATE shop.events"); err != nil {
				t.Fatal(err)
			}
			changes = append(changes, change{table: "shop.events", rc: replication.RelationChange{Truncated: true}})
		}
		crash := b%4 == 3
		for _, base := range []string{"shop.account_days", "shop.plan_daily"} {
			c := o.follow(base, changes)
			res := o.run(ctx, base, &c, true)
			if diff := o.differences(ctx, base); diff != "" {
				t.Fatalf("batch %d: %s differs from its definition (%+v):\n%s", b, base, res, diff)
			}
			// What a crash leaves: the base's maintenance committed, its
			// dependents' not.
			if crash && res.Written() > 0 {
				for _, dep := range chainBases[base] {
					if o.differences(ctx, dep) != "" {
						stale++
						break
					}
				}
			}
			replay := o.run(ctx, base, &c, true)
			if replay.Written() != 0 {
				t.Fatalf("batch %d: replaying the changes to %s wrote %+v", b, base, replay)
			}
			if got, want := maintain.NamedKeys(replay.Named), maintain.NamedKeys(res.Named); !slices.Equal(got, want) || replay.Named.Full != res.Named.Full {
				t.Fatalf("batch %d: the replay of %s named %v (%q), the maintenance %v (%q)", b, base, got, replay.Named.Full, want, res.Named.Full)
			}
			if base == "shop.account_days" && withoutAccount && !truncated &&
				!slices.ContainsFunc(maintain.NamedKeys(res.Named), func(k string) bool { return strings.HasPrefix(k, "NULL|") }) {
				t.Fatalf("batch %d: an event of no account was inserted, and %s named no row of a NULL account_id: %v (%q)",
					b, base, maintain.NamedKeys(res.Named), res.Named.Full)
			}
			named := res.Named
			if crash {
				named = replay.Named
			}
			for _, dep := range chainBases[base] {
				dc := o.follow(dep, changes)
				dc.FollowTable(o.plans[dep], o.plans[base], named)
				checkChainReason(t, b, dep, base, dc.Full(), truncated)
				got := o.run(ctx, dep, &dc, false)
				if diff := o.differences(ctx, dep); diff != "" {
					t.Fatalf("batch %d: %s differs from its definition after following %s (%d rows named, crash %v; %+v):\n%s",
						b, dep, base, len(maintain.NamedKeys(named)), crash, got, diff)
				}
				if got.Full == "" && len(maintain.NamedKeys(named)) > 0 {
					incremental[dep]++
				}
				again := o.follow(dep, changes)
				again.FollowTable(o.plans[dep], o.plans[base], replay.Named)
				if w := o.run(ctx, dep, &again, false); w.Written() != 0 {
					t.Fatalf("batch %d: %s replayed from the rows the replay of %s named wrote %+v", b, dep, base, w)
				}
			}
		}
	}
	t.Logf("%d random statements in %d batches; %d crashes left a dependent stale", o.statements, batches, stale)
	if stale == 0 {
		t.Error("no crash left a dependent stale: the test does not show that the replay's named rows are needed")
	}
	for _, dep := range []string{"shop.days", "shop.months", "shop.account_totals", "shop.plan_days"} {
		t.Logf("%s: %d of %d maintenances followed the rows its base named", dep, incremental[dep], batches)
		if incremental[dep] == 0 {
			t.Errorf("%s never followed the rows its base named", dep)
		}
	}
}

// insertWithoutAccount inserts an event of no account, in a transaction
// of its own, and returns its change.
func (o *oracle) insertWithoutAccount(ctx context.Context, nextID *int64) change {
	o.t.Helper()
	*nextID++
	var ch change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		// The text forms the walsender prints the row in.
		if _, err := tx.Exec(ctx, "SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL extra_float_digits = 3"); err != nil {
			return err
		}
		ch = o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events VALUES ($1::bigint, NULL, 'k1', 5, timestamptz '2026-03-28 12:00+01' + $1::bigint % 5000 * interval '1 minute', 's1')
			RETURNING `+returning("shop.events", "events"), *nextID)
		return nil
	})
	if err != nil {
		o.t.Fatal(err)
	}
	return ch
}

// follow is what view's maintenance follows of changes to the tables it
// reads.
func (o *oracle) follow(view string, changes []change) maintain.Changes {
	var c maintain.Changes
	for _, ch := range changes {
		if o.plans[view].Sources[ch.table] != nil {
			c.Follow(o.plans[view], ch.table, ch.rc)
		}
	}
	return c
}

// checkChainReason checks why dep, built on base, is recomputed whole, if
// it is.
func checkChainReason(t *testing.T, b int, dep, base, full string, truncated bool) {
	t.Helper()
	var want string
	switch {
	case dep == "shop.sizes":
		want = "shop.sizes reads columns of shop.account_days other than its key (n)"
	case dep == "shop.plans":
		// shop.events computes the day of shop.plan_daily, shop.accounts the
		// plan: neither a whole key.
		want = "no maintenance of shop.plan_daily names rows of it"
	case truncated:
		want = base + " was recomputed whole (TRUNCATE shop.events)"
	}
	if want == "" && full != "" && !strings.Contains(full, "shop.accounts") {
		t.Fatalf("batch %d: %s is recomputed whole: %s", b, dep, full)
	}
	if !strings.Contains(full, want) || want != "" && full == "" {
		t.Fatalf("batch %d: %s is recomputed whole for %q, want %q", b, dep, full, want)
	}
}
