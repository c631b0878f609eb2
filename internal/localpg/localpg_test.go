package localpg

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{Settings: map[string]string{"max_slot_wal_keep_size": "64MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	query := func(db, sql string) string {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL(db))
		if err != nil {
			t.Fatalf("connect %s: %v", c.URL(db), err)
		}
		defer conn.Close(ctx)
		var s string
		if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return s
	}

	if got := query("postgres", "SHOW wal_level"); got != "logical" {
		t.Fatalf("wal_level = %q, want logical", got)
	}
	if got := query("postgres", "SHOW max_slot_wal_keep_size"); got != "64MB" {
		t.Fatalf("max_slot_wal_keep_size = %q, want 64MB (Options.Settings)", got)
	}

	const db = `my "db" 1`
	if err := c.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	if got := query(db, "SELECT current_database()"); got != db {
		t.Fatalf("current_database() = %q, want %q", got, db)
	}
	if got := query(db, "SELECT slot_name::text FROM pg_create_logical_replication_slot('t', 'pgoutput')"); got != "t" {
		t.Fatalf("slot = %q", got)
	}

	port := c.Port()
	if err := c.Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if c.Port() != port {
		t.Fatalf("port changed across restart: %d -> %d", port, c.Port())
	}
	// The slot is persistent, so it must survive the simulated crash.
	if got := query(db, "SELECT slot_name::text FROM pg_replication_slots"); got != "t" {
		t.Fatalf("slot after restart = %q", got)
	}

	pid := c.postmasterPID()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.DataDir()); !os.IsNotExist(err) {
		t.Fatalf("data dir %s still exists after Stop (err=%v)", c.DataDir(), err)
	}
	if alive(pid) {
		t.Fatalf("postmaster %d still running after Stop", pid)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
