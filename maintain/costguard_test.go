package maintain_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestMaintainRecomputesWholeWhenTheGroupsCostAsMuch changes rows
// scattered over the table: following them would read about the whole
// table, so the maintenance recomputes the whole view, says so, and the
// view is still equal to its definition.
func TestMaintainRecomputesWholeWhenTheGroupsCostAsMuch(t *testing.T) {
	ctx := context.Background()
	o := newOracle(t, "costguard")
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = append(changes, o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET amount = e.amount + 1
			FROM (SELECT * FROM shop.events WHERE kind = 'k2' AND id % 5 <> 0 FOR UPDATE) old WHERE e.id = old.id
			RETURNING `+returning("shop.events", "old")+", "+returning("shop.events", "e")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.purchases", changes); !strings.Contains(res.Full, "about as many as the view has") {
		t.Fatalf("updates of four fifths of the view's rows: maintenance %+v, want the whole view recomputed for its cost", res)
	}
	o.maintain(ctx, "shop.per_account_day", changes)

	// A few groups stay a recompute of those groups.
	err = pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = []change{o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events VALUES (900001, 3, 'k1', 5, '2026-03-28 10:00+01', 's1')
			RETURNING `+returning("shop.events", "events"))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.per_account_day", changes); res.Full != "" || res.Groups != 1 {
		t.Fatalf("one inserted row: maintenance %+v, want 1 group recomputed", res)
	}

	// Fewer rows than the view has, scattered: the planner's estimate says
	// so.
	err = pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = []change{o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET amount = e.amount + 1
			FROM (SELECT * FROM shop.events WHERE id % 10 = 2 FOR UPDATE) old WHERE e.id = old.id
			RETURNING `+returning("shop.events", "old")+", "+returning("shop.events", "e"))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.purchases", changes); !strings.Contains(res.Full, "planner estimate") {
		t.Fatalf("updates of 300 rows scattered over the table, 150 of them in the view: maintenance %+v, want the whole view recomputed for its estimated cost", res)
	}
}
