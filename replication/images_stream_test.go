package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
)

// commitsTo hands the stream's transactions to the test.
type commitsTo chan<- *Transaction

func (c commitsTo) Commit(ctx context.Context, tx *Transaction) error {
	select {
	case c <- tx:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (commitsTo) Progress(context.Context, pglogrepl.LSN) error { return nil }

const imagesSchema = `
CREATE SCHEMA app;
CREATE TABLE app.by_default (id int PRIMARY KEY, name text, at timestamp, span interval, ratio float8, big text);
-- Out of line and uncompressed: an UPDATE that leaves it alone does not send it.
ALTER TABLE app.by_default ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE app.full_rows (id int PRIMARY KEY, name text);
ALTER TABLE app.full_rows REPLICA IDENTITY FULL;
CREATE TABLE app.by_index (id int, code text NOT NULL, name text);
CREATE UNIQUE INDEX by_index_code ON app.by_index (code);
ALTER TABLE app.by_index REPLICA IDENTITY USING INDEX by_index_code;
CREATE TABLE app.unselected (id int PRIMARY KEY);
CREATE PUBLICATION images FOR TABLE app.by_default, app.full_rows, app.by_index, app.unselected;`

// TestStream_Images streams row changes under each replica identity, with
// the server's text forms set to ones another session would misread (a
// date in 'SQL, DMY' reads back as another date under MDY): the stream's
// own settings must be the ones its walsender prints values with.
func TestStream_Images(t *testing.T) {
	cluster := pgtest.Start(t, localpg.Options{Settings: map[string]string{
		"DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard", "extra_float_digits": "0",
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := cluster.CreateDatabase(ctx, "images"); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL("images"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, imagesSchema); err != nil {
		t.Fatal(err)
	}
	var unselected, byIndexOID uint32
	if err := pool.QueryRow(ctx, "SELECT 'app.unselected'::regclass::oid, 'app.by_index'::regclass::oid").Scan(&unselected, &byIndexOID); err != nil {
		t.Fatal(err)
	}

	stream, err := Connect(ctx, cluster.URL("images"), "images", "images", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stream.Close(context.Background()); err != nil {
			t.Errorf("close the stream: %v", err)
		}
	}()
	if _, err := stream.EnsureSlot(ctx, pool, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	// Every column of the other tables (the names they do not have are
	// ignored), two of app.by_index.
	stream.SelectImages(func(oid uint32) []string {
		switch oid {
		case unselected:
			return nil
		case byIndexOID:
			return []string{"name", "code", "nickname"}
		}
		return []string{"id", "name", "at", "span", "ratio", "big"}
	})
	commits := make(chan *Transaction)
	stopped := make(chan error, 1)
	go func() { stopped <- stream.Run(ctx, commitsTo(commits)) }()
	defer func() {
		cancel()
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Errorf("stream: %v", err)
		}
	}()

	// next returns the changes of the next transaction the stream commits.
	next := func(sql string) []RelationChange {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		select {
		case tx := <-commits:
			return tx.Changes
		case err := <-stopped:
			t.Fatalf("stream stopped: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not streamed in 10 s", sql)
		}
		return nil
	}
	expect := func(sql string, want ...RelationChange) {
		t.Helper()
		got := next(sql)
		for i := range got {
			got[i].OID = 0 // the server's choice
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", sql, abridged(got), abridged(want))
		}
	}
	// The primary key is the replica identity.
	defaultColumns := []Column{{"id", 23, true}, {"name", 25, false}, {"at", 1114, false}, {"span", 1186, false}, {"ratio", 701, false}, {"big", 25, false}}
	byDefault := func(images ...RowImage) RelationChange {
		return RelationChange{Namespace: "app", Name: "by_default", Rows: len(images), Columns: defaultColumns, ReplicaIdentity: 'd', Images: images}
	}
	// big is sent whole, and too long to keep (MaxImageValueBytes).
	row := []Value{text("1"), text("ann"), text("2026-12-05 13:14:15.5"), text("1 day 02:03:04"), text("0.30000000000000004"), {Dropped: true}}

	expect(`INSERT INTO app.by_default VALUES (1, 'ann', '2026-12-05 13:14:15.5', '1 day 02:03:04', 0.1::float8 + 0.2, repeat('x', 10000));
		INSERT INTO app.unselected VALUES (1)`,
		byDefault(RowImage{Kind: 'I', New: row}),
		RelationChange{Namespace: "app", Name: "unselected", Rows: 1})
	renamed := append(append([]Value{text("1"), text("anne")}, row[2:5]...), unchanged)
	rekeyed := append([]Value{text("2")}, renamed[1:]...)
	expect(`UPDATE app.by_default SET name = 'anne'; UPDATE app.by_default SET id = 2`,
		byDefault(RowImage{Kind: 'U', New: renamed},
			RowImage{Kind: 'U', OldKind: 'K', Old: []Value{text("1"), null, null, null, null, null}, New: rekeyed}))
	expect(`DELETE FROM app.by_default`,
		byDefault(RowImage{Kind: 'D', OldKind: 'K', Old: []Value{text("2"), null, null, null, null, null}}))

	fullRows := func(images ...RowImage) RelationChange {
		// Every column is the replica identity.
		return RelationChange{Namespace: "app", Name: "full_rows", Rows: len(images), Columns: []Column{{"id", 23, true}, {"name", 25, true}}, ReplicaIdentity: 'f', Images: images}
	}
	expect(`INSERT INTO app.full_rows VALUES (1, 'a'), (2, NULL); UPDATE app.full_rows SET name = 'b' WHERE id = 1; DELETE FROM app.full_rows WHERE id = 2`,
		fullRows(RowImage{Kind: 'I', New: []Value{text("1"), text("a")}},
			RowImage{Kind: 'I', New: []Value{text("2"), null}},
			RowImage{Kind: 'U', OldKind: 'O', Old: []Value{text("1"), text("a")}, New: []Value{text("1"), text("b")}},
			RowImage{Kind: 'D', OldKind: 'O', Old: []Value{text("2"), null}}))

	byIndex := func(images ...RowImage) RelationChange {
		// The index's column is the replica identity; id is not kept.
		return RelationChange{Namespace: "app", Name: "by_index", Rows: len(images), Columns: []Column{{"code", 25, true}, {"name", 25, false}}, ReplicaIdentity: 'i', Images: images}
	}
	expect(`INSERT INTO app.by_index VALUES (1, 'c1', 'x'); UPDATE app.by_index SET name = 'y'; UPDATE app.by_index SET code = 'c2'; DELETE FROM app.by_index`,
		byIndex(RowImage{Kind: 'I', New: []Value{text("c1"), text("x")}},
			RowImage{Kind: 'U', New: []Value{text("c1"), text("y")}},
			RowImage{Kind: 'U', OldKind: 'K', Old: []Value{text("c1"), null}, New: []Value{text("c2"), text("y")}},
			RowImage{Kind: 'D', OldKind: 'K', Old: []Value{text("c2"), null}}))
}

// abridged shortens the long values of changes, for a failure's message.
func abridged(changes []RelationChange) []RelationChange {
	out := make([]RelationChange, len(changes))
	for i, c := range changes {
		out[i] = c
		out[i].Images = make([]RowImage, len(c.Images))
		for j, img := range c.Images {
			img.Old, img.New = abridgedValues(img.Old), abridgedValues(img.New)
			out[i].Images[j] = img
		}
	}
	return out
}

func abridgedValues(vs []Value) []Value {
	if vs == nil {
		return nil
	}
	out := slices.Clone(vs)
	for i, v := range out {
		if len(v.Text) > 40 {
			out[i].Text = fmt.Sprintf("%s... (%d bytes)", v.Text[:20], len(v.Text))
		}
	}
	return out
}
