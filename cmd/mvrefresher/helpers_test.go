package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// needsPostgreSQL skips a test that starts a PostgreSQL under -short (make
// unit), which runs only the tests that need no server.
func needsPostgreSQL(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
}

// startCluster starts a throwaway PostgreSQL for one test and connects to
// its postgres database, running schema there.
func startCluster(t *testing.T, schema string) (*localpg.Cluster, *pgxpool.Pool) {
	t.Helper()
	needsPostgreSQL(t)
	ctx := context.Background()
	cluster, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(context.Background()); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	pool, err := pgxpool.New(ctx, cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if schema != "" {
		if _, err := pool.Exec(ctx, schema); err != nil {
			t.Fatalf("schema: %v", err)
		}
	}
	return cluster, pool
}
