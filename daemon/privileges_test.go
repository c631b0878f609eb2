package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/daemon"
	"io"
	"log/slog"
)

func TestDaemon_RoleWithoutReplicationIsAClearError(t *testing.T) {
	e := newEnv(t, schemaSQL)
	role := "norepl_" + e.name
	e.exec(`CREATE ROLE "` + role + `" LOGIN; GRANT postgres TO "` + role + `"`)
	t.Cleanup(func() { e.exec(`DROP ROLE "` + role + `"`) })
	cfg := e.cfg
	cfg.DatabaseURL = strings.Replace(cfg.DatabaseURL, "postgres@", role+"@", 1)

	err := daemon.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("Run as a role without REPLICATION: %v; want an error naming the REPLICATION attribute", err)
	}
	var exists bool
	if err := e.pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", cfg.Publication).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("the publication was created before the replication connection was refused")
	}
}
