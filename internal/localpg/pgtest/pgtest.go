// Package pgtest starts throwaway PostgreSQL clusters for tests: it skips
// the test under -short (make unit runs only what needs no server), fails
// it with the reason when the cluster cannot start (no initdb), and stops
// the cluster when the test ends.
package pgtest

import (
	"context"
	"testing"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// Start starts a cluster with opts for t.
func Start(t testing.TB, opts localpg.Options) *localpg.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
	c, err := localpg.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start a throwaway PostgreSQL (the tests need its server binaries, initdb among them): %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return c
}
