package maintain_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/replication"
)

// TestMaintainSkipsRowsTheFilterRejects: changed rows that the view's WHERE
// rejects on their own columns name nothing, so the maintenance does not
// read the table for them.
func TestMaintainSkipsRowsTheFilterRejects(t *testing.T) {
	ctx := context.Background()
	o := newOracle(t, "filter_skips")
	var ch change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		ch = o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events
			SELECT 900000 + g, g, 'k1', 5, '2026-03-28 10:00+01', 's1' FROM generate_series(1, 20) g
			RETURNING `+returning("shop.events", "events"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var c maintain.Changes
	c.Follow(o.plans["shop.purchases"], "shop.events", ch.rc)
	res, scans := o.maintainCountingScans(ctx, "shop.purchases", &c)
	if res.Full != "" || res.Groups != 0 || res.Written() != 0 || scans["events"] != 0 {
		t.Fatalf("20 inserted rows of a kind shop.purchases filters out: maintenance %+v, %d scans of shop.events; want nothing recomputed nor read", res, scans["events"])
	}
	if diff := o.differences(ctx, "shop.purchases"); diff != "" {
		t.Fatalf("shop.purchases differs from its definition:\n%s", diff)
	}
}

// filterSchema: a table under REPLICA IDENTITY DEFAULT (the primary key),
// and a view of some of its rows by a column outside the identity.
const filterSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigint PRIMARY KEY, kind text, amount numeric);
INSERT INTO shop.events SELECT g, CASE WHEN g % 2 = 0 THEN 'purchase' ELSE 'visit' END, g FROM generate_series(1, 100) g;
CREATE MATERIALIZED VIEW shop.purchases AS SELECT id, amount FROM shop.events WHERE kind = 'purchase' AND amount > 0;`

// TestMaintainFilterUnderDefaultIdentity: an UPDATE that moves a row out
// of the view's filter sends no old row under REPLICA IDENTITY DEFAULT
// (its key did not change), and a DELETE's old row lacks the filter's
// column: both still name the view row, which goes.
func TestMaintainFilterUnderDefaultIdentity(t *testing.T) {
	ctx := context.Background()
	o := newOracleWith(t, "filter_default", filterSchema, []string{"shop.purchases"}, map[string]string{"timezone": "UTC"})
	oracleColumns := []string{"id", "kind", "amount"}
	cols := func(alias string) string {
		var out string
		for i, c := range oracleColumns {
			if i > 0 {
				out += ", "
			}
			out += fmt.Sprintf("%s.%s::text AS %s", alias, c, c)
		}
		return out
	}
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = append(changes,
			o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET kind = 'visit'
				FROM (SELECT * FROM shop.events WHERE id IN (2, 4) FOR UPDATE) old WHERE e.id = old.id
				RETURNING `+cols("old")+", "+cols("e")),
			o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET kind = 'purchase'
				FROM (SELECT * FROM shop.events WHERE id = 3 FOR UPDATE) old WHERE e.id = old.id
				RETURNING `+cols("old")+", "+cols("e")),
			o.exec(ctx, tx, "shop.events", 'D', `DELETE FROM shop.events WHERE id = 6 RETURNING `+cols("shop.events")),
			o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events VALUES (101, 'visit', 1), (102, 'purchase', 0) RETURNING `+cols("events")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range changes {
		changes[i].rc = asDefaultIdentity(changes[i].rc, "id")
	}
	res := o.maintain(ctx, "shop.purchases", changes)
	if res.Full != "" || res.Deleted != 3 || res.Inserted != 1 {
		t.Fatalf("maintenance %+v, want rows 2, 4 and 6 deleted and 3 inserted, incrementally", res)
	}
}

// asDefaultIdentity turns rc, written under REPLICA IDENTITY FULL, into
// what pgoutput sends under DEFAULT with primary key identity: no old row
// for an UPDATE that kept the key, an old row of the key alone otherwise.
func asDefaultIdentity(rc replication.RelationChange, identity ...string) replication.RelationChange {
	rc.ReplicaIdentity = 'd'
	rc.Columns = slices.Clone(rc.Columns)
	for i := range rc.Columns {
		rc.Columns[i].Key = slices.Contains(identity, rc.Columns[i].Name)
	}
	keyOnly := func(vals []replication.Value) []replication.Value {
		out := make([]replication.Value, len(vals))
		for i, v := range vals {
			if rc.Columns[i].Key {
				out[i] = v
			} else {
				out[i].Null = true
			}
		}
		return out
	}
	images := make([]replication.RowImage, len(rc.Images))
	for n, img := range rc.Images {
		keyChanged := false
		for i := range rc.Columns {
			keyChanged = keyChanged || img.Kind == 'U' && rc.Columns[i].Key && img.Old[i] != img.New[i]
		}
		switch {
		case img.Kind == 'D' || keyChanged:
			img.OldKind, img.Old = 'K', keyOnly(img.Old)
		case img.Kind == 'U':
			img.OldKind, img.Old = 0, nil
		}
		images[n] = img
	}
	rc.Images = images
	return rc
}

// collationSchema: a column whose collation is not the database's: ICU's
// root collation sorts 'a' before 'B', C after.
const collationSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.codes (id bigint PRIMARY KEY, code text COLLATE "und-x-icu", n int);
ALTER TABLE shop.codes REPLICA IDENTITY FULL;
INSERT INTO shop.codes SELECT g, chr(65 + g % 26), g FROM generate_series(1, 100) g;
CREATE MATERIALIZED VIEW shop.early AS SELECT id, n FROM shop.codes WHERE code < 'B';`

// TestMaintainFilterUnderTheColumnsCollation: the changed rows are judged
// under their column's collation, as the view judges them.
func TestMaintainFilterUnderTheColumnsCollation(t *testing.T) {
	ctx := context.Background()
	o := newOracleWith(t, "filter_collation", collationSchema, []string{"shop.early"}, map[string]string{"timezone": "UTC"})
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = append(changes, o.exec(ctx, tx, "shop.codes", 'I', `INSERT INTO shop.codes VALUES (101, 'a', 1) RETURNING id::text, code::text, n::text`))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.early", changes); res.Inserted != 1 {
		t.Fatalf("a row of code 'a', which sorts before 'B' in the column's collation: maintenance %+v, want it inserted", res)
	}
}

// TestMaintainOneKeyChangedTwiceInABatch: two versions of a key that the
// filter tells apart (a purchase, then another kind) take one place among
// the changed rows, and still name the key.
func TestMaintainOneKeyChangedTwiceInABatch(t *testing.T) {
	ctx := context.Background()
	o := newOracle(t, "filter_twice")
	update := func(tx pgx.Tx, kind string) change {
		return o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET kind = $1
			FROM (SELECT * FROM shop.events WHERE id = 2 FOR UPDATE) old WHERE e.id = old.id
			RETURNING `+returning("shop.events", "old")+", "+returning("shop.events", "e"), kind)
	}
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = append(changes, update(tx, "k1"), update(tx, "k3"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := o.maintain(ctx, "shop.purchases", changes); res.Full != "" || res.Deleted != 1 {
		t.Fatalf("purchase 2 turned into another kind, twice: maintenance %+v, want it deleted incrementally", res)
	}
}

// TestMaintainValuesTooLongToKeep: a filter column's value the stream did
// not keep leaves the row to be named whatever the filter says; a key
// column's makes the maintenance recompute the view whole, saying why.
func TestMaintainValuesTooLongToKeep(t *testing.T) {
	ctx := context.Background()
	o := newOracle(t, "filter_dropped")
	var ch change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		ch = o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events VALUES (900001, 3, 'k2', 5, '2026-03-28 10:00+01', 's1')
			RETURNING `+returning("shop.events", "events"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dropped := func(column string) change {
		c := ch
		c.rc.Images = slices.Clone(ch.rc.Images)
		img := &c.rc.Images[0]
		img.New = slices.Clone(img.New)
		img.New[slices.IndexFunc(c.rc.Columns, func(col replication.Column) bool { return col.Name == column })] = replication.Value{Dropped: true}
		return c
	}
	if res := o.maintain(ctx, "shop.purchases", []change{dropped("kind")}); res.Full != "" || res.Inserted != 1 {
		t.Fatalf("an inserted purchase whose kind the stream did not keep: maintenance %+v, want it inserted incrementally", res)
	}
	var c maintain.Changes
	c.Follow(o.plans["shop.purchases"], "shop.events", dropped("id").rc)
	if !strings.Contains(c.Full(), "longer than") {
		t.Fatalf("an inserted row whose key the stream did not keep: %q, want the whole view recomputed, saying why", c.Full())
	}
}
