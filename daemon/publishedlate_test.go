package daemon_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// openWriter starts a transaction that inserts rows into table and stays
// open until the test commits it.
func (e *env) openWriter(table string, rows int) pgx.Tx {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.cfg.DatabaseURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "INSERT INTO "+table+" SELECT g FROM generate_series(1, $1) g", rows); err != nil {
		e.t.Fatal(err)
	}
	return tx
}

// A table joins the publication while a transaction that wrote to it is
// still open: pgoutput never streams those rows, even once it commits. The
// view reading the table must not be refreshed, nor said to be fresh,
// before that transaction has ended; then it holds its rows. The same at a
// start that publishes the table.
func TestDaemon_TableJoiningThePublicationWaitsForOpenWriters(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.late (id int PRIMARY KEY);
		CREATE TABLE app.later (id int PRIMARY KEY);`)
	e.start()
	e.settle()

	published := func(table string) {
		t.Helper()
		e.waitFor(table+" in the publication", 10*time.Second, func() (bool, error) {
			var n int
			err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables
				WHERE pubname = $1 AND schemaname || '.' || tablename = $2`, e.cfg.Publication, table).Scan(&n)
			return n == 1, err
		})
		e.waitFor("the daemon to manage the view over "+table, 10*time.Second, func() (bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := e.daemon.View(ctx, "app.mv_"+table[len("app."):])
			return err == nil, nil
		})
	}
	notFreshWhileOpen := func(view string) {
		t.Helper()
		// Long enough for a refresh that does not wait: it takes
		// milliseconds once the view is managed.
		if st, err := e.waitFresh(view, e.walLSN(), 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s reported fresh while a transaction that wrote to its source before it was published is open: %+v, %v", view, st, err)
		}
	}
	freshOnceCommitted := func(view string, writer pgx.Tx, rows int) {
		t.Helper()
		if err := writer.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st, err := e.waitFresh(view, e.walLSN(), 20*time.Second); err != nil {
			t.Fatalf("%s once the writer committed: %+v, %v", view, st, err)
		}
		if n := e.queryInt("SELECT n FROM " + view); n != rows {
			t.Fatalf("%s counts %d rows, want the writer's %d", view, n, rows)
		}
	}

	// While running: the view appears after the rows were written.
	writer := e.openWriter("app.late", 5)
	e.exec(`CREATE MATERIALIZED VIEW app.mv_late AS SELECT count(*)::int AS n FROM app.late;
		CREATE UNIQUE INDEX ON app.mv_late (n);`)
	published("app.late")
	notFreshWhileOpen("app.mv_late")
	freshOnceCommitted("app.mv_late", writer, 5)

	// At a start.
	e.stop()
	writer = e.openWriter("app.later", 7)
	e.exec(`CREATE MATERIALIZED VIEW app.mv_later AS SELECT count(*)::int AS n FROM app.later;
		CREATE UNIQUE INDEX ON app.mv_later (n);`)
	e.start()
	published("app.later")
	notFreshWhileOpen("app.mv_later")
	freshOnceCommitted("app.mv_later", writer, 7)
	e.settle()
	e.assertFresh("app.mv_late", "app.mv_later")
}
