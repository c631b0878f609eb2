package metrics

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetrics_Documented keeps the metrics table of docs/metrics-and-alerts.md
// in step with the metrics the daemon serves.
func TestMetrics_Documented(t *testing.T) {
	reference, err := os.ReadFile("../docs/metrics-and-alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	m := New(func() bool { return true }, func() bool { return false })
	m.SetViews(1, map[string]int{"no-replica-identity": 1})
	names := map[string]bool{}
	// A vector without children is not gathered: ask every collector field
	// for its descriptions instead.
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	fields := reflect.ValueOf(m).Elem()
	for i := range fields.NumField() {
		if !fields.Type().Field(i).IsExported() {
			continue
		}
		c, ok := fields.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		descs := make(chan *prometheus.Desc, 8)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			if match := fqName.FindStringSubmatch(d.String()); match != nil {
				names[match[1]] = true
			}
		}
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{"mvrefresher_refreshes_total", "mvrefresher_views", "mvrefresher_build_info", "mvrefresher_standby"} {
		if !names[want] {
			t.Fatalf("%s not found among %v: the test no longer sees every metric", want, names)
		}
	}
	for name := range names {
		if !strings.HasPrefix(name, "mvrefresher_") {
			continue // Go runtime and process metrics
		}
		if !strings.Contains(string(reference), "| `"+name+"{") && !strings.Contains(string(reference), "| `"+name+"`") {
			t.Errorf("docs/metrics-and-alerts.md: the metrics table has no row for %s", name)
		}
	}
}

func TestMetrics_SetViewsKeepsAGoneReasonAtZero(t *testing.T) {
	m := New(func() bool { return true }, func() bool { return false })
	m.SetViews(3, map[string]int{"not-owner": 1, "no-replica-identity": 2})
	m.SetViews(5, map[string]int{"not-owner": 1})
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "mvrefresher_views" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["state"]+"/"+labels["reason"]] = s.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"managed/": 5, "unmanaged/not-owner": 1, "unmanaged/no-replica-identity": 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mvrefresher_views: got %v, want %v", got, want)
	}
}
