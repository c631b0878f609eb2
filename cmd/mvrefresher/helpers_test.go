package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
	"github.com/mvrefresher/mvrefresher/internal/wait"
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
	ctx := context.Background()
	cluster := pgtest.Start(t, localpg.Options{})
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

// startDaemon runs `mvrefresher run` with flags (and --listen on a free
// port) until the test ends, and returns its HTTP address once /views
// lists views views, each fresh through a position (its startup refresh
// done).
func startDaemon(t *testing.T, flags []string, views int) (base string) {
	t.Helper()
	addr := freeAddr(t)
	base = "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	stopped := make(chan error, 1)
	go func() {
		stopped <- run(ctx, append([]string{"run", "--listen", addr, "--log-format", "json"}, flags...), logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	err := wait.Until("the startup refreshes", 30*time.Second, func() (bool, error) {
		var states []events.ViewState
		code, err := getJSON(base+"/views", &states)
		if err != nil || code != http.StatusOK || len(states) != views {
			return false, nil
		}
		for _, s := range states {
			if s.FreshThrough == "" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	return base
}
