package replication

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
)

// A physical slot holding the configured name is refused with what it is,
// before anything is created.
func TestEnsureSlot_RefusesAPhysicalSlotOfTheName(t *testing.T) {
	cluster := pgtest.Start(t, localpg.Options{})
	ctx := context.Background()
	if err := cluster.CreateDatabase(ctx, "slots"); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL("slots"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t; SELECT pg_create_physical_replication_slot('taken')"); err != nil {
		t.Fatal(err)
	}
	stream, err := Connect(ctx, cluster.URL("slots"), "taken", "pub", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close(ctx) }()
	_, err = stream.EnsureSlot(ctx, pool, func() error {
		t.Error("a slot was about to be created")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `replication slot "taken" exists but is a physical slot`) {
		t.Fatalf("EnsureSlot over a physical slot of the name: %v; want it refused as a physical slot", err)
	}
}
