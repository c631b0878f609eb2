package maintain

import (
	"strings"
	"testing"
)

// TestFollowsTable_NeedsABaseWhoseMaintenancesNameRows: a view built on a
// maintained table by its key follows it only when some source of the
// table names whole rows of it; a table keyed by a dimension's plan and a
// fact's day (each source computing one of the two), or whose sources
// are all recomputed whole, names none at any maintenance.
func TestFollowsTable_NeedsABaseWhoseMaintenancesNameRows(t *testing.T) {
	base := &Plan{
		Table:   "app.daily_by_plan",
		Columns: []Column{{Name: "day"}, {Name: "plan"}, {Name: "n"}},
		Key:     []int{0, 1},
		Sources: map[string]*Source{
			"app.events":   {Name: "app.events", Keys: []SourceKey{{Column: 0}}},
			"app.accounts": {Name: "app.accounts", Keys: []SourceKey{{Column: 1}}},
		},
	}
	view := &Plan{Table: "app.plans", Sources: map[string]*Source{"app.daily_by_plan": {Name: "app.daily_by_plan", Reads: []string{"plan"}}}}
	want := "no maintenance of app.daily_by_plan names rows of it"
	if got := view.FollowsTable(base); !strings.Contains(got, want) {
		t.Errorf("built on a table whose sources each compute part of its key: %q, want %q", got, want)
	}
	var c Changes
	c.FollowTable(view, base, &Named{key: []string{"day", "plan"}, Full: "the changes to app.events do not name whole rows of app.daily_by_plan"})
	if !strings.Contains(c.Full(), want) {
		t.Errorf("following it: recomputed whole for %q, want %q", c.Full(), want)
	}

	base.Sources["app.events"].Keys = []SourceKey{{Column: 0}, {Column: 1}}
	if got := view.FollowsTable(base); got != "" {
		t.Errorf("built on a table a source of which computes its whole key: %q, want it followed", got)
	}
	base.Sources["app.events"].Full = "TRUNCATE"
	if got := view.FollowsTable(base); !strings.Contains(got, want) {
		t.Errorf("built on a table whose source computing its whole key is recomputed whole: %q, want %q", got, want)
	}
}
