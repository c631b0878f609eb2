package schedule

import (
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
)

func TestPlanTargets_DependentsImposeOnBases(t *testing.T) {
	// app.a <- app.b <- app.c, and app.a <- app.d
	a := &catalog.View{Name: "app.a"}
	b := &catalog.View{Name: "app.b", Bases: []string{"app.a"}}
	c := &catalog.View{Name: "app.c", Bases: []string{"app.b"}}
	d := &catalog.View{Name: "app.d", Bases: []string{"app.a"}}
	cat := catalog.New(a, b, c, d)
	own := map[string]time.Duration{"app.c": 60 * time.Second, "app.d": 30 * time.Second}
	est := map[string]time.Duration{"app.b": 5 * time.Second, "app.c": 10 * time.Second, "app.d": 25 * time.Second}
	got := PlanTargets(cat, func(v string) time.Duration { return own[v] }, func(v string) time.Duration { return est[v] })
	want := map[string]Target{
		"app.c": {60 * time.Second, "app.c"},
		"app.b": {50 * time.Second, "app.c"}, // c's 60 s less c's 10 s
		"app.d": {30 * time.Second, "app.d"},
		"app.a": {5 * time.Second, "app.d"}, // d's 30 s less 25 s is tighter than b's 50 s less 5 s
	}
	for v, w := range want {
		if got[v] != w {
			t.Errorf("%s: %+v, want %+v", v, got[v], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	own["app.a"] = 2 * time.Second // its own is tighter still
	if got := PlanTargets(cat, func(v string) time.Duration { return own[v] }, func(v string) time.Duration { return est[v] }); got["app.a"] != (Target{2 * time.Second, "app.a"}) {
		t.Errorf("app.a with its own 2s: %+v", got["app.a"])
	}
}
