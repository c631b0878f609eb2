package maintain_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// typesSchema has keys computed from a jsonb column and of types outside
// pg_catalog (an enum, a domain), whose names the maintenance must spell
// with their schema.
const typesSchema = `
CREATE TYPE public.status AS ENUM ('new', 'paid', 'void');
CREATE DOMAIN public.region AS text CHECK (VALUE <> '');
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigint PRIMARY KEY, status public.status, region public.region, payload jsonb);
ALTER TABLE shop.events REPLICA IDENTITY FULL;
INSERT INTO shop.events SELECT g, (ARRAY['new', 'paid', 'void']::public.status[])[g % 3 + 1], 'r' || g % 4,
  jsonb_build_object('kind', 'k' || g % 5, 'n', g) FROM generate_series(1, 500) g;
CREATE INDEX ON shop.events ((payload->>'kind'));
CREATE INDEX ON shop.events (status);
CREATE INDEX ON shop.events (payload);
CREATE MATERIALIZED VIEW shop.by_kind AS SELECT payload->>'kind' AS kind, count(*) AS n FROM shop.events GROUP BY 1;
CREATE MATERIALIZED VIEW shop.by_status AS SELECT status, region, count(*) AS n FROM shop.events GROUP BY status, region;
CREATE MATERIALIZED VIEW shop.by_payload AS SELECT payload, count(*) AS n FROM shop.events GROUP BY payload;
CREATE MATERIALIZED VIEW shop.by_region AS SELECT region, count(*) AS n FROM shop.events GROUP BY region;`

// TestMaintainKeysOfEveryType follows changes to rows whose keys are
// computed from a jsonb column, or are of an enum and a domain outside
// pg_catalog.
func TestMaintainKeysOfEveryType(t *testing.T) {
	ctx := context.Background()
	views := []string{"shop.by_kind", "shop.by_status", "shop.by_payload", "shop.by_region"}
	o := newOracleOf(t, "types", typesSchema, views)
	var changes []change
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		changes = append(changes,
			o.exec(ctx, tx, "shop.events", 'I', `INSERT INTO shop.events VALUES (1001, 'void', 'r9', '{"kind": "k9", "n": 1}')
				RETURNING id::text, status::text, region::text, payload::text`),
			o.exec(ctx, tx, "shop.events", 'U', `UPDATE shop.events e SET status = 'paid', region = 'r8', payload = '{"kind": "k8"}'
				FROM (SELECT * FROM shop.events WHERE id = 7 FOR UPDATE) old WHERE e.id = old.id
				RETURNING old.id::text, old.status::text, old.region::text, old.payload::text, e.id::text, e.status::text, e.region::text, e.payload::text`))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views[:3] {
		if res := o.maintain(ctx, v, changes); res.Full != "" || res.Written() == 0 {
			t.Errorf("%s: maintenance %+v, want the changed groups recomputed and written", v, res)
		}
	}
	// No index serves region: recomputing a region's rows would read the
	// whole table, so the whole view is recomputed, saying why.
	if res := o.maintain(ctx, "shop.by_region", changes); !strings.Contains(res.Full, "no index leads with region") {
		t.Errorf("shop.by_region: maintenance %+v, want the whole view recomputed for want of an index on region", res)
	}
}
