package inspect

import (
	"context"
	"fmt"
	"slices"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// ExplainReport is what `mvrefresher explain` shows: which views a change
// to a table, or a refresh of a view, sets off, and in which order.
type ExplainReport struct {
	// Name is the relation asked about, as format('%I.%I') writes it.
	Name string `json:"name"`
	// Kind is "table" (a source of managed views), "view" (a managed
	// materialized view), "unmanaged view" or "relation" (anything else).
	Kind string `json:"kind"`
	// Problem says why an unmanaged view is not managed.
	Problem string `json:"problem,omitempty"`
	// Waves are the views refreshed, in order: a view starts once the
	// views of the waves before it that it is built on are done.
	Waves [][]ExplainedView `json:"waves"`
}

// ExplainedView is one view a change refreshes.
type ExplainedView struct {
	View string `json:"view"`
	// After are the views of earlier waves it waits for.
	After        []string `json:"after"`
	Debounce     string   `json:"debounce"`
	MaxWait      string   `json:"max_wait"`
	MinInterval  string   `json:"min_interval"`
	Concurrently string   `json:"concurrently"`
	// LastDurationMS is its last refresh's duration; null when never
	// refreshed by mvrefresher.
	LastDurationMS *float64 `json:"last_duration_ms"`
	// MaxStaleness is its effective staleness target (absent without one)
	// and MaxStalenessFrom the view whose max_staleness sets it.
	MaxStaleness     string `json:"max_staleness,omitempty"`
	MaxStalenessFrom string `json:"max_staleness_from,omitempty"`
	// Incremental is how it is maintained incrementally, or why not
	// (absent for a view neither maintained nor marked incremental).
	Incremental *Incremental `json:"incremental,omitempty"`
}

// Explain says what a change to the table name (or a refresh of the view
// name) refreshes, as the daemon would route it: a dry run that reads the
// catalog and the refresh log and changes nothing.
func (in *Inspector) Explain(ctx context.Context, name string) (ExplainReport, error) {
	schema, relname, err := config.ParseQualifiedName(name)
	if err != nil {
		return ExplainReport{}, fmt.Errorf("%q: %w", name, err)
	}
	pool, cat := in.pool, in.catalog
	rep := ExplainReport{Waves: [][]ExplainedView{}}
	if err := pool.QueryRow(ctx, "SELECT format('%I.%I', $1::text, $2::text)", schema, relname).Scan(&rep.Name); err != nil {
		return rep, fmt.Errorf("quote %q: %w", name, err)
	}
	var start []string
	switch view, table := cat.Lookup(schema, relname); {
	case view != nil:
		rep.Kind, start = "view", []string{view.Name}
	case table != nil:
		rep.Kind = "table"
		start, _, _ = cat.Route(table.OID)
	default:
		if i := slices.IndexFunc(cat.Excluded, func(p catalog.Problem) bool { return p.View == rep.Name }); i >= 0 {
			rep.Kind, rep.Problem = "unmanaged view", cat.Excluded[i].Code+": "+cat.Excluded[i].Message
			return rep, nil
		}
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
			schema, relname).Scan(&exists); err != nil {
			return rep, fmt.Errorf("look up %s: %w", rep.Name, err)
		}
		if !exists {
			return rep, fmt.Errorf("%s: no such table or view", rep.Name)
		}
		rep.Kind = "relation" // no managed view reads it
	}
	waves := cat.Waves(start)
	rows, err := in.log.Rows(ctx, pool, cat.Names()) // targets depend on every view's
	if err != nil {
		return rep, err
	}
	targets := schedule.TargetsFromLog(in.cfg, cat, rows)
	earlier := map[string]bool{}
	for _, wave := range waves {
		var out []ExplainedView
		for _, v := range wave {
			s := in.cfg.ViewSettings(v)
			e := ExplainedView{View: v, After: []string{}, Debounce: s.Debounce.String(), MaxWait: s.MaxWait.String(),
				MinInterval: s.MinInterval.String(), Concurrently: string(s.Concurrently)}
			for _, b := range cat.TransitiveBases(v) {
				if earlier[b] {
					e.After = append(e.After, b)
				}
			}
			if r, ok := rows[v]; ok {
				e.LastDurationMS = r.DurationMS
			}
			if t, ok := targets[v]; ok {
				e.MaxStaleness, e.MaxStalenessFrom = t.MaxStaleness.String(), t.From
			}
			if e.Incremental, err = in.incremental(ctx, cat.Views[v]); err != nil {
				return rep, err
			}
			out = append(out, e)
		}
		for _, v := range wave {
			earlier[v] = true
		}
		rep.Waves = append(rep.Waves, out)
	}
	return rep, nil
}

// Graph is the dependency graph of the managed views.
func (in *Inspector) Graph() catalog.Graph { return in.catalog.Graph() }
