package daemon_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var metricName = regexp.MustCompile(`\b(?:mvrefresher|process|go)_[a-z_]+`)

// TestDeploy_DashboardAndAlertsUseRealMetrics parses the Grafana dashboard
// and the Prometheus alert rules and checks that every metric they use is in
// a scrape of a running daemon.
func TestDeploy_DashboardAndAlertsUseRealMetrics(t *testing.T) {
	var exprs []string
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	data, err := os.ReadFile("../deploy/grafana/mvrefresher.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	data, err = os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions parsed", len(exprs))
	}

	e := newEnv(t, schemaSQL)
	e.cfg.SlotCheckInterval = 100 * time.Millisecond
	e.start()
	e.settle()
	e.exec("INSERT INTO app.events VALUES (80, '2026-01-01', 1, 1)")
	e.settle()
	var scrape string
	e.waitFor("every metric family in the scrape", 30*time.Second, func() (bool, error) {
		rec := httptest.NewRecorder()
		e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		scrape = rec.Body.String()
		return strings.Contains(scrape, "mvrefresher_view_staleness_seconds{") && strings.Contains(scrape, "mvrefresher_slot_retained_bytes{"), nil
	})
	exported := map[string]bool{}
	for _, line := range strings.Split(scrape, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
			if f[3] == "histogram" {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					exported[f[2]+suffix] = true
				}
			}
		}
	}
	// A failed refresh's series appear with the first failure; the family is
	// what must exist.
	for _, expr := range exprs {
		for _, name := range metricName.FindAllString(expr, -1) {
			if !exported[name] {
				t.Errorf("%s (in %q) is not exported by the daemon", name, expr)
			}
		}
	}
}
