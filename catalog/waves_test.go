package catalog

import (
	"reflect"
	"testing"
)

func TestWaves(t *testing.T) {
	events := &Table{OID: 1, Schema: "core", Relname: "events", Name: "core.events"}
	accounts := &Table{OID: 2, Schema: "core", Relname: "accounts", Name: "core.accounts"}
	daily := &View{Name: "a.daily", Sources: []*Table{events}}
	monthly := &View{Name: "a.monthly", Bases: []string{"a.daily"}}
	// Built on a view of the first wave and one of the second: third wave.
	report := &View{Name: "a.report", Bases: []string{"a.daily", "a.monthly"}}
	byAccount := &View{Name: "a.by_account", Sources: []*Table{events, accounts}}
	other := &View{Name: "a.other", Sources: []*Table{accounts}}
	cat := New(daily, monthly, report, byAccount, other)

	readers, _, _ := cat.Route(events.OID)
	want := [][]string{{"a.by_account", "a.daily"}, {"a.monthly"}, {"a.report"}}
	if got := cat.Waves(readers); !reflect.DeepEqual(got, want) {
		t.Errorf("a change to core.events: %q, want %q", got, want)
	}
	// A refresh of monthly alone: report waits for it, not for daily.
	if got, want := cat.Waves([]string{"a.monthly"}), [][]string{{"a.monthly"}, {"a.report"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("a refresh of a.monthly: %q, want %q", got, want)
	}
	if got := cat.Waves(nil); len(got) != 0 {
		t.Errorf("nothing: %q", got)
	}
}

func TestWithDependents(t *testing.T) {
	events := &Table{OID: 1, Schema: "core", Relname: "events", Name: "core.events"}
	daily := &View{Name: "a.daily", Sources: []*Table{events}}
	monthly := &View{Name: "a.monthly", Bases: []string{"a.daily"}}
	report := &View{Name: "a.report", Bases: []string{"a.daily", "a.monthly"}}
	other := &View{Name: "a.other", Sources: []*Table{events}}
	cat := New(daily, monthly, report, other)

	if got, want := cat.WithDependents("a.monthly", "a.daily"), []string{"a.monthly", "a.report", "a.daily"}; !reflect.DeepEqual(got, want) {
		t.Errorf("with dependents: %q, want %q (each once)", got, want)
	}
	if got, want := cat.TransitiveDependents("a.daily"), []string{"a.monthly", "a.report"}; !reflect.DeepEqual(got, want) {
		t.Errorf("transitive dependents of a.daily: %q, want %q", got, want)
	}
	if got := cat.TransitiveDependents("a.other"); len(got) != 0 {
		t.Errorf("a view nothing is built on: %q", got)
	}
}
