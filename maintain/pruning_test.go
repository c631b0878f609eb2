package maintain_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/maintain"
)

// pruningSchema: a fact table partitioned by time, and a view keyed by its
// primary key, which names the partition of each row.
const pruningSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigint, occurred_at timestamptz, amount numeric, PRIMARY KEY (id, occurred_at))
    PARTITION BY RANGE (occurred_at);
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.events_other PARTITION OF shop.events DEFAULT;
INSERT INTO shop.events SELECT g, timestamptz '2025-06-01' + g * interval '1 hour', g FROM generate_series(1, 20000) g;
ANALYZE shop.events;
CREATE MATERIALIZED VIEW shop.paid AS SELECT id, occurred_at, amount FROM shop.events WHERE amount > 0;`

// TestMaintainReadsOnlyThePartitionsOfTheChangedRows: the changed rows'
// keys reach the recompute as constants, so PostgreSQL prunes the
// partitions that cannot hold them (and matches them by hash, not by
// parsing the list again for each row it reads).
func TestMaintainReadsOnlyThePartitionsOfTheChangedRows(t *testing.T) {
	ctx := context.Background()
	o := newOracleOf(t, "pruning", pruningSchema, []string{"shop.paid"})
	var rc change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		rc = o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET amount = 0
			FROM (SELECT * FROM shop.events WHERE id IN (9000, 9001, 9002) FOR UPDATE) old WHERE e.id = old.id AND e.occurred_at = old.occurred_at
			RETURNING old.id::text, old.occurred_at::text, old.amount::text, e.id::text, e.occurred_at::text, e.amount::text`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var c maintain.Changes
	c.Follow(o.plans["shop.paid"], "shop.events", rc.rc)
	res, scans := o.maintainCountingScans(ctx, "shop.paid", &c)
	if res.Full != "" || res.Deleted != 3 {
		t.Fatalf("maintenance %+v, want the 3 rows deleted incrementally", res)
	}
	if scans["events_2026"] == 0 {
		t.Fatalf("the partition of the changed rows was not read: scans %v", scans)
	}
	for _, other := range []string{"events_2025", "events_other"} {
		if scans[other] != 0 {
			t.Errorf("the maintenance read %s, which holds none of the changed rows: scans %v", other, scans)
		}
	}
	if diff := o.differences(ctx, "shop.paid"); diff != "" {
		t.Fatalf("shop.paid differs from its definition:\n%s", diff)
	}
}

// maintainCountingScans maintains view from c in a transaction of its own,
// and counts the scans of each table of schema shop it made.
func (o *oracle) maintainCountingScans(ctx context.Context, view string, c *maintain.Changes) (maintain.Result, map[string]int64) {
	o.t.Helper()
	var res maintain.Result
	var scans map[string]int64
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		// The counts are the backend's since it last reported them; it
		// does not report them inside a transaction.
		before, err := shopScans(ctx, tx)
		if err != nil {
			return err
		}
		if res, err = maintain.Maintain(ctx, tx, o.plans[view], o.zones[view], c, false); err != nil {
			return err
		}
		if scans, err = shopScans(ctx, tx); err != nil {
			return err
		}
		for name, n := range before {
			scans[name] -= n
		}
		return nil
	})
	if err != nil {
		o.t.Fatalf("maintain %s: %v", view, err)
	}
	return res, scans
}

// shopScans counts the scans of each table of schema shop, from the
// backend's counts not yet reported.
func shopScans(ctx context.Context, tx pgx.Tx) (map[string]int64, error) {
	rows, err := tx.Query(ctx, `SELECT relname, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE schemaname = 'shop'`)
	if err != nil {
		return nil, err
	}
	scans := map[string]int64{}
	var name string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error {
		scans[name] = n
		return nil
	})
	return scans, err
}
