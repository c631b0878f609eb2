package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// candidatesSQL lists the materialized views and maintained tables of the
// managed schemas (all when $1 is empty).
const candidatesSQL = `
SELECT format('%I.%I', n.nspname, c.relname), c.relkind = 'm'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (coalesce(cardinality($1::text[]), 0) = 0 OR n.nspname = ANY($1))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (c.relkind = 'm' OR c.relkind = 'r' AND EXISTS (
        SELECT 1 FROM pg_class d WHERE d.relnamespace = c.relnamespace AND d.relkind = 'v'
          AND d.relname = c.relname || '` + catalog.MaintainedDefinitionSuffix + `'
          AND starts_with(coalesce(obj_description(d.oid, 'pg_class'), ''), '` + catalog.MaintainedMarkerPrefix + `')))
ORDER BY 1`

// candidate is a materialized view or maintained table convertViews
// looks at.
type candidate struct {
	name    string
	matview bool
}

// listCandidates runs candidatesSQL.
func (d *Daemon) listCandidates(ctx context.Context, pool *pgxpool.Pool) ([]candidate, error) {
	rows, err := pool.Query(ctx, candidatesSQL, d.cfg.Schemas)
	if err != nil {
		return nil, fmt.Errorf("list views to maintain incrementally: %w", err)
	}
	candidates, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		var c candidate
		return c, r.Scan(&c.name, &c.matview)
	})
	if err != nil {
		return nil, fmt.Errorf("list views to maintain incrementally: %w", err)
	}
	return candidates, nil
}

// convertViews turns incremental maintenance on for the views whose
// configuration says incremental: true, and off for the maintained tables
// whose configuration no longer does, each in one transaction. A view
// that cannot be converted stays as it was, and the error says why.
func (d *Daemon) convertViews(ctx context.Context, pool *pgxpool.Pool) error {
	candidates, err := d.listCandidates(ctx, pool)
	if err != nil {
		return err
	}
	for _, c := range candidates {
		s := d.cfg.ViewSettings(c.name)
		want := s.Incremental && s.Enabled
		switch {
		case c.matview && want:
			if err := enable(ctx, pool, c.name); err != nil {
				if err := d.conversionFailed(ctx, pool, c.name, want, err); err != nil {
					return err
				}
				continue
			}
			d.logger.Info("incremental maintenance on: the view is now a table mvrefresher maintains", "view", c.name)
		case !c.matview && !want:
			if err := maintain.Disable(ctx, pool, c.name); err != nil {
				if err := d.conversionFailed(ctx, pool, c.name, want, err); err != nil {
					return err
				}
				continue
			}
			d.logger.Info("incremental maintenance off: the view is a materialized view again", "view", c.name)
		}
	}
	return nil
}

// conversionFailed logs why the view name was not converted to maintained
// (true) or back, unless it is converted after all: the other instance of
// an HA pair starting at the same moment converts it first, and this
// one's conversion then finds a table where it looked for a materialized
// view (or the other way round). It returns an error only when the start
// cannot go on.
func (d *Daemon) conversionFailed(ctx context.Context, pool *pgxpool.Pool, name string, maintained bool, convertErr error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	candidates, err := d.listCandidates(ctx, pool)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(candidates, func(c candidate) bool { return c.name == name })
	done := i >= 0 && candidates[i].matview != maintained
	switch {
	case done && maintained:
		d.logger.Info("incremental maintenance on: another instance turned it on meanwhile", "view", name)
	case done:
		d.logger.Info("incremental maintenance off: another instance turned it off meanwhile", "view", name)
	case maintained:
		d.logger.Error("cannot maintain the view incrementally: it stays a materialized view, refreshed whole", "view", name, "error", convertErr)
	default:
		d.logger.Error("cannot turn incremental maintenance off: the view stays a maintained table", "view", name, "error", convertErr)
	}
	return nil
}

// enable analyses the materialized view name and converts it. Its OID is
// read now, not when it was listed: converting a view it is built on
// created it again, under a new OID.
func enable(ctx context.Context, pool *pgxpool.Pool, name string) error {
	var oid uint32
	if err := pool.QueryRow(ctx, "SELECT $1::regclass::oid", name).Scan(&oid); err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	plan, err := maintain.Analyze(ctx, pool, name, oid)
	if err != nil {
		return err
	}
	key := make([]string, len(plan.Key))
	for i, k := range plan.Key {
		key[i] = plan.Columns[k].Name
	}
	return maintain.Enable(ctx, pool, name, key)
}

// maintenancePlans analyses each maintained view of cat. A view that
// cannot be analysed (its definition edited into one that cannot be
// maintained, or the server unreachable) gets the reason instead of a
// plan: its refreshes fail with it until a discovery analyses it again.
func (d *Daemon) maintenancePlans(ctx context.Context, pool *pgxpool.Pool, cat *catalog.Catalog) (map[string]*refresher.Maintenance, error) {
	out := map[string]*refresher.Maintenance{}
	for _, name := range cat.Names() {
		v := cat.Views[name]
		if v.Maintained == nil {
			continue
		}
		m := &refresher.Maintenance{}
		marker, _, err := maintain.ParseMarker(v.Maintained.Marker)
		if err == nil {
			m.TimeZone = marker.TimeZone
			m.Plan, err = maintain.Analyze(ctx, pool, name, v.Maintained.Definition)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Analysis failing for a moment (the connection) fails its
		// refreshes until the next discovery: it must not hold up the
		// others' discovery.
		m.Problem = err
		out[name] = m
	}
	return out, nil
}
