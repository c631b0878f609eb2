package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/config"
)

// CheckViewKeys finds the keys of the configuration's views: section that
// name no materialized view (or table maintained incrementally, which was
// one) in the managed schemas (none: every schema),
// one Problem (code unknown-view, View the key) each, suggesting the
// closest existing name.
func CheckViewKeys(ctx context.Context, q Querier, keys, schemas []string) ([]Problem, error) {
	keys = slices.Sorted(slices.Values(keys))
	var out []Problem
	var matviews []string // read once, for the first key that needs a suggestion
	for _, key := range keys {
		problem := func(format string, args ...any) {
			out = append(out, Problem{View: key, Code: "unknown-view", Message: fmt.Sprintf(format, args...)})
		}
		schema, name, err := config.ParseQualifiedName(key)
		if err != nil {
			problem("views: %q: %v", key, err)
			continue
		}
		var kind string
		err = q.QueryRow(ctx, `SELECT CASE WHEN c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_class d WHERE d.relnamespace = c.relnamespace
			  AND d.relname = c.relname || '`+MaintainedDefinitionSuffix+`' AND d.relkind = 'v'
			  AND starts_with(coalesce(obj_description(d.oid, 'pg_class'), ''), '`+MaintainedMarkerPrefix+`'))
			THEN 'm' ELSE c.relkind::text END
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`, schema, name).Scan(&kind)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if matviews == nil {
				if matviews, err = materializedViewNames(ctx, q); err != nil {
					return nil, err
				}
			}
			problem("views: %q: no such materialized view%s", key, didYouMean(schema+"."+name, matviews))
		case err != nil:
			return nil, fmt.Errorf("check configured views: %w", err)
		case kind != "m":
			problem("views: %q is not a materialized view", key)
		case len(schemas) > 0 && !slices.Contains(schemas, schema):
			problem("views: %q is outside the managed schemas %v", key, schemas)
		}
	}
	return out, nil
}

// materializedViewNames lists every materialized view as schema.name,
// unquoted, as ParseQualifiedName returns them.
func materializedViewNames(ctx context.Context, q Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'm' ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list materialized views: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list materialized views: %w", err)
	}
	return names, nil
}

// didYouMean suggests the name among names closest to want, if one is
// close enough to be a typo: at most a quarter of its characters (and at
// least two) edited.
func didYouMean(want string, names []string) string {
	best := config.ClosestName(want, names, max(2, len(want)/4))
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}
