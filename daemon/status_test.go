package daemon_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/daemon"
)

func TestStatus(t *testing.T) {
	e := newEnv(t, schemaSQL+`
		CREATE TABLE app.keyless (v int);
		CREATE MATERIALIZED VIEW app.mv_keyless AS SELECT count(*) AS n FROM app.keyless;`)
	ctx := context.Background()

	// Before the first start: no slot, nothing refreshed.
	rep, err := daemon.Status(ctx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Slot.Exists || len(rep.Views) != 6 || rep.Views[0].Status != nil {
		t.Fatalf("status before start: %+v", rep)
	}

	e.start()
	e.settle()
	rep, err = daemon.Status(ctx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Slot.Exists || !rep.Slot.Active || rep.Slot.LagBytes == nil || rep.Slot.WALStatus == nil || *rep.Slot.WALStatus != "reserved" {
		t.Errorf("slot: %+v", rep.Slot)
	}
	byName := map[string]daemon.ViewStatus{}
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
	major := serverMajor(t)
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
	if rep, err = daemon.Status(ctx, e.cfg); err != nil {
		t.Fatal(err)
	}
	if (rep.Slot.InactiveSince != nil) != (major >= 17) || rep.Slot.Active {
		t.Errorf("stopped slot on PostgreSQL %d: active %v, inactive_since %v", major, rep.Slot.Active, rep.Slot.InactiveSince)
	}
}
