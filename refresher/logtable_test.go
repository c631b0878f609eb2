package refresher

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// Marking thousands of views owed (the first start, a publication repair)
// must not take a lock per view: the server's lock table holds
// max_locks_per_transaction per connection, and filling it fails the mark
// (53200) at every try.
func TestMarkOwed_ThousandsOfViewsFitTheLockTable(t *testing.T) {
	ctx := context.Background()
	c, err := localpg.Start(ctx, localpg.Options{Settings: map[string]string{"max_locks_per_transaction": "10"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	pool, err := pgxpool.New(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := NewLog("public", "mv_refresh_log")
	if err := log.Ensure(ctx, pool); err != nil {
		t.Fatal(err)
	}
	views := make([]string, 50000)
	for i := range views {
		views[i] = fmt.Sprintf("app.mv_%d", i)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO public.mv_refresh_log (mv_name, lsn, refresh_count, status, attempted_at)
		SELECT v, '0/1', 1, 'ok', now() FROM unnest($1::text[]) v`, views); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return log.MarkOwed(ctx, tx, views, true)
	}); err != nil {
		t.Fatalf("mark %d views owed: %v", len(views), err)
	}
	owed, err := log.Owed(ctx, pool, views)
	if err != nil || len(owed) != len(views) {
		t.Fatalf("owed after the mark: %d of %d (%v)", len(owed), len(views), err)
	}
}
