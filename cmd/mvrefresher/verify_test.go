package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// verify exits 0 when every view equals its definition and 1 when one
// differs, with the differing rows in its output and in --json.
func TestVerify_ExitStatusAndOutput(t *testing.T) {
	ctx := context.Background()
	cluster, pool := startCluster(t, `CREATE SCHEMA analytics;
		CREATE TABLE analytics.orders (id int PRIMARY KEY, account int NOT NULL);
		INSERT INTO analytics.orders VALUES (1, 1), (2, 1);
		CREATE MATERIALIZED VIEW analytics.per_account AS SELECT account, count(*) AS n FROM analytics.orders GROUP BY account;
		CREATE UNIQUE INDEX ON analytics.per_account (account);`)
	verify := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"verify", "--database-url", cluster.URL("postgres"), "--schemas", "analytics"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := verify()
	if err != nil || !strings.Contains(out, "analytics.per_account: equal to its definition (1 row,") {
		t.Fatalf("verify of a fresh view: %v\n%s", err, out)
	}

	if _, err := pool.Exec(ctx, "INSERT INTO analytics.orders VALUES (3, 2)"); err != nil {
		t.Fatal(err)
	}
	out, err = verify()
	if exitCode(err) != 1 || !strings.Contains(out, "analytics.per_account: DIFFERS from its definition: 1 row missing, 0 extra") ||
		!strings.Contains(out, "    (2,1)") {
		t.Fatalf("verify of a stale view: exit %d (%v), want 1 and the missing row (2,1):\n%s", exitCode(err), err, out)
	}
	out, err = verify("--json", "analytics.per_account")
	var rep struct {
		Views []struct {
			View        string
			Equal       bool
			MissingRows []string `json:"missing_rows"`
		}
	}
	if exitCode(err) != 1 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Views) != 1 ||
		rep.Views[0].Equal || len(rep.Views[0].MissingRows) != 1 || rep.Views[0].MissingRows[0] != "(2,1)" {
		t.Fatalf("verify --json of a stale view: exit %d (%v):\n%s", exitCode(err), err, out)
	}
	if _, err := verify("analytics.nope"); exitCode(err) != 1 || !strings.Contains(err.Error(), "no such materialized view") {
		t.Fatalf("verify of an unknown view: %v", err)
	}
}
