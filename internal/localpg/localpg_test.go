package localpg

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/internal/wait"
)

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
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

func TestStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := primary.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	exec := func(c *Cluster, sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(c *Cluster) (n int, err error) {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		return n, err
	}
	exec(primary, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
	standby, err := primary.StartStandby(ctx, "standby1", Options{Settings: map[string]string{"hot_standby_feedback": "on"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := standby.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	exec(primary, "INSERT INTO t VALUES (2)")
	if err := wait.Until("the standby to replay the insert", time.Minute, func() (bool, error) {
		n, err := count(standby)
		return n == 2, err
	}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var state string
	err = conn.QueryRow(ctx, "SELECT state FROM pg_stat_replication WHERE application_name = 'standby1'").Scan(&state)
	conn.Close(ctx)
	if err != nil || state != "streaming" {
		t.Fatalf("standby1 in pg_stat_replication: %q, %v", state, err)
	}

	if err := primary.Halt(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	exec(standby, "INSERT INTO t VALUES (3)")
	if n, err := count(standby); err != nil || n != 3 {
		t.Fatalf("promoted standby has %d rows (%v), want 3", n, err)
	}
}
