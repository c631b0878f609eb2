package inspect_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/inspect"
)

// schemaSQL is the daemon tests' schema, their barrier view included.
const schemaSQL = `
CREATE TABLE app.events (id bigint, at date NOT NULL, account int NOT NULL, amount int NOT NULL,
    PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE app.accounts (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.unrelated (id int PRIMARY KEY, note text);

CREATE VIEW app.v_big AS SELECT * FROM app.events WHERE amount >= 100;

CREATE MATERIALIZED VIEW app.mv_totals AS
    SELECT account, count(*) AS n, sum(amount) AS total FROM app.events GROUP BY account;
CREATE UNIQUE INDEX ON app.mv_totals (account);

CREATE MATERIALIZED VIEW app.mv_big AS
    SELECT a.name, count(*) AS n FROM app.v_big b JOIN app.accounts a ON a.id = b.account GROUP BY a.name;
CREATE UNIQUE INDEX ON app.mv_big (name);

CREATE MATERIALIZED VIEW app.mv_grand AS SELECT sum(n) AS n, sum(total) AS total FROM app.mv_totals;
CREATE UNIQUE INDEX ON app.mv_grand (n);

CREATE MATERIALIZED VIEW app."Mixed Case ""quoted"" view" AS SELECT id, name FROM app.accounts;
CREATE UNIQUE INDEX ON app."Mixed Case ""quoted"" view" (id);

INSERT INTO app.accounts VALUES (1, 'ada'), (2, 'bob');
INSERT INTO app.events VALUES (1, '2025-06-01', 1, 50), (2, '2026-02-01', 2, 150);
REFRESH MATERIALIZED VIEW app.mv_totals;
REFRESH MATERIALIZED VIEW app.mv_big;
REFRESH MATERIALIZED VIEW app.mv_grand;
REFRESH MATERIALIZED VIEW app."Mixed Case ""quoted"" view";

CREATE TABLE app.barrier_src (id int PRIMARY KEY);
CREATE MATERIALIZED VIEW app.mv_barrier AS SELECT count(*) AS n FROM app.barrier_src;
CREATE UNIQUE INDEX ON app.mv_barrier (n);`

func TestStatus(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		CREATE TABLE app.keyless (v int);
		CREATE MATERIALIZED VIEW app.mv_keyless AS SELECT count(*) AS n FROM app.keyless;`)

	// Before the first start: no slot, nothing refreshed; the slots that
	// do exist are named.
	if _, err := e.pool.Exec(context.Background(), "SELECT pg_create_logical_replication_slot('other_slot', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	rep, err := e.status()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Slot.Exists || len(rep.Views) != 6 || rep.Views[0].Status != nil {
		t.Fatalf("status before start: %+v", rep)
	}
	if !slices.Equal(rep.SlotsInDatabase, []string{"other_slot"}) {
		t.Errorf("slots in the database %q, want other_slot", rep.SlotsInDatabase)
	}
	if _, err := e.pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('other_slot')"); err != nil {
		t.Fatal(err)
	}

	e.start()
	e.settle()
	rep, err = e.status()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Slot.Exists || !rep.Slot.Active || rep.Slot.LagBytes == nil || rep.Slot.WALStatus == nil || *rep.Slot.WALStatus != "reserved" {
		t.Errorf("slot: %+v", rep.Slot)
	}
	if rep.SlotsInDatabase != nil {
		t.Errorf("slots in the database listed although the slot exists: %q", rep.SlotsInDatabase)
	}
	byName := map[string]inspect.ViewStatus{}
	for _, v := range rep.Views {
		byName[v.View] = v
	}
	grand := byName["app.mv_grand"]
	if !grand.Managed || grand.Status == nil || *grand.Status != "ok" || grand.RefreshCount != 1 || grand.Concurrently == nil || !*grand.Concurrently ||
		!slices.Equal(grand.DependsOn, []string{"app.mv_totals"}) {
		t.Errorf("mv_grand: %+v", grand)
	}
	if big := byName["app.mv_big"]; !slices.Equal(big.Sources, []string{"app.events", "app.accounts"}) && !slices.Equal(big.Sources, []string{"app.accounts", "app.events"}) {
		t.Errorf("mv_big sources %q", big.Sources)
	}
	if k := byName["app.mv_keyless"]; k.Managed || !strings.Contains(k.Problem, "no-replica-identity") {
		t.Errorf("mv_keyless: %+v", k)
	}

	// PostgreSQL 17 and later say more about the slot.
	major := e.serverMajor()
	if major >= 17 {
		if rep.Slot.Failover == nil || !*rep.Slot.Failover || rep.Slot.InactiveSince != nil || rep.Slot.InvalidationReason != nil {
			t.Errorf("slot on PostgreSQL %d: failover %v, inactive_since %v, invalidation_reason %v; want a valid, active failover slot",
				major, rep.Slot.Failover, rep.Slot.InactiveSince, rep.Slot.InvalidationReason)
		}
	} else if rep.Slot.Failover != nil || rep.Slot.InactiveSince != nil {
		t.Errorf("slot on PostgreSQL %d: failover %v, inactive_since %v; want null, the server has no such columns", major, rep.Slot.Failover, rep.Slot.InactiveSince)
	}

	// The JSON keys of the contract.
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"slot":{"name"`, `"active":true`, `"confirmed_flush_lsn":"`, `"lag_bytes":`, `"wal_status":"reserved"`,
		`"views":[`, `"view":"app.mv_grand"`, `"sources":`, `"depends_on":["app.mv_totals"]`, `"refreshed_at":"`, `"status":"ok"`, `"refresh_count":1`, `"concurrently":true`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("status JSON lacks %s:\n%s", key, data)
		}
	}

	e.stop()
	if rep, err = e.status(); err != nil {
		t.Fatal(err)
	}
	if (rep.Slot.InactiveSince != nil) != (major >= 17) || rep.Slot.Active {
		t.Errorf("stopped slot on PostgreSQL %d: active %v, inactive_since %v", major, rep.Slot.Active, rep.Slot.InactiveSince)
	}
}
