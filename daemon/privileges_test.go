package daemon_test

import (
	"context"
	"strings"
	"testing"

	"io"
	"log/slog"

	"github.com/mvrefresher/mvrefresher/daemon"
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

// A least-privilege role (deploy/role.sql): from PostgreSQL 17 on, the
// MAINTAIN privilege on a view is enough to refresh it; before, only its
// owner can, and the view is not managed (with the fix in the log).
func TestDaemon_MaintainPrivilegeIsEnoughFrom17(t *testing.T) {
	e := newEnv(t, "")
	role := "maint_" + e.name
	e.exec(`CREATE ROLE "` + role + `" LOGIN REPLICATION;
		GRANT CREATE ON DATABASE "` + e.name + `" TO "` + role + `";
		GRANT USAGE, CREATE ON SCHEMA app, public TO "` + role + `";
		CREATE TABLE app.src (id int PRIMARY KEY);
		ALTER TABLE app.src OWNER TO "` + role + `";
		ALTER TABLE app.barrier_src OWNER TO "` + role + `";
		ALTER MATERIALIZED VIEW app.mv_barrier OWNER TO "` + role + `";
		CREATE MATERIALIZED VIEW app.mv_maintained AS SELECT count(*) AS n FROM app.src;
		CREATE UNIQUE INDEX ON app.mv_maintained (n);`)
	t.Cleanup(func() { e.exec(`DROP OWNED BY "` + role + `" CASCADE; DROP ROLE "` + role + `"`) })
	major := serverMajor(t)
	if major >= 17 {
		e.exec(`GRANT MAINTAIN ON app.mv_maintained TO "` + role + `"`)
	}
	e.cfg.DatabaseURL = strings.Replace(e.cfg.DatabaseURL, "postgres@", role+"@", 1)
	e.start()
	e.settle()
	e.exec("INSERT INTO app.src VALUES (1)")
	evs := e.settle()
	if major >= 17 {
		e.expectEvents(evs, "app.mv_maintained change ok")
		e.assertFresh("app.mv_maintained")
		return
	}
	e.expectEvents(evs)
	if logs := e.logs.String(); !strings.Contains(logs, "view=app.mv_maintained") || !strings.Contains(logs, "not-owner") {
		t.Errorf("PostgreSQL %d: no not-owner problem logged for app.mv_maintained:\n%s", major, logs)
	}
}
