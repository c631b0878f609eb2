package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
)

// TestIncremental_TargetEstimateSeededPerMode restarts the daemon over a
// refresh log whose last row for a maintained view with max_staleness 3s
// says it took 30 s: a full recompute that slow (the startup's) says
// nothing of its incremental maintenances, so the target is not said to be
// unmeetable; an incremental maintenance that slow is.
func TestIncremental_TargetEstimateSeededPerMode(t *testing.T) {
	e, _ := incrementalEnv(t, map[string]config.View{})
	target := 3 * time.Second
	v := e.cfg.Views["app.daily"]
	v.MaxStaleness = &target
	e.cfg.Views["app.daily"] = v
	e.start()
	e.settle()
	e.stop()
	const warning = "max_staleness cannot be met"
	for _, c := range []struct {
		mode string
		warn bool
	}{{"full", false}, {"incremental", true}} {
		e.exec("UPDATE public.mv_refresh_log SET duration_ms = 30000, maintenance = $1 WHERE mv_name = 'app.daily'", c.mode)
		before := strings.Count(e.logs.String(), warning)
		e.start()
		e.settle() // the scheduler has planned from the log
		e.stop()
		logs := e.logs.String()
		warned := strings.Count(logs, warning) > before
		if warned != c.warn || c.warn && !strings.Contains(logs, "refresh_estimate=30s arrival_lag=0s maintenance=incremental") {
			t.Errorf("a last %s refresh of 30 s in the log: warned %v, want %v:\n%s", c.mode, warned, c.warn, logs)
		}
	}

	// Turned off, the view is a materialized view again: its last
	// maintenance's duration says nothing of what a refresh takes.
	off := false
	v.Incremental = &off
	e.cfg.Views["app.daily"] = v
	before := strings.Count(e.logs.String(), warning)
	e.start()
	e.settle()
	e.stop()
	if logs := e.logs.String(); strings.Count(logs, warning) > before {
		t.Errorf("a view turned off, planned from its last incremental maintenance (30 s):\n%s", logs)
	}
}
