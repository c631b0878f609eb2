package schedule

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
)

func TestReporter_LastSuccessIsTheLastSuccessfulRefresh(t *testing.T) {
	m := metrics.New(func() bool { return true }, func() bool { return false })
	r := newReporter(slog.New(slog.DiscardHandler), m, nil, nil)
	view := &catalog.View{Schema: "app", Relname: "v", Name: "app.v"}
	finished := time.Date(2026, 12, 5, 10, 0, 30, 500_000_000, time.UTC)
	ok := refresher.Outcome{StartedAt: finished.Add(-time.Second), FinishedAt: finished}
	r.refreshed(view, events.Refresh{View: "app.v", Status: events.StatusOK}, ok)
	failed := refresher.Outcome{StartedAt: finished.Add(time.Minute), FinishedAt: finished.Add(time.Minute + time.Second), Err: errors.New("boom")}
	r.refreshed(view, events.Refresh{View: "app.v", Status: events.StatusFailed}, failed)

	want := float64(finished.UnixNano()) / 1e9
	var got dto.Metric
	if err := m.LastSuccess.WithLabelValues("app.v").Write(&got); err != nil {
		t.Fatal(err)
	}
	if got.GetGauge().GetValue() != want {
		t.Errorf("mvrefresher_last_success_timestamp_seconds = %f, want %f (the successful refresh, not the failed one after it)", got.GetGauge().GetValue(), want)
	}
}

// A view no longer managed leaves no series behind: its last success would
// otherwise age into an alert.
func TestScheduler_ADroppedViewsSeriesAreDeleted(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	s.finish(result{view: req.View.Name, outcome: refresher.Outcome{LSN: req.LSN, Recorded: true, StartedAt: s.now, FinishedAt: s.now.Add(time.Millisecond)}})
	s.metrics.VisibilityWaits.WithLabelValues("app.base")
	if !hasSeries(t, s.metrics, "app.base") {
		t.Fatal("no series of app.base after its refresh")
	}
	s.applyCatalog(CatalogUpdate{Catalog: catalog.New(s.catalog.Views["app.dep"])})
	if hasSeries(t, s.metrics, "app.base") {
		t.Error("a series of app.base is left after it was dropped")
	}
}

// hasSeries reports whether any metric has a series for view.
func hasSeries(t *testing.T, m *metrics.Metrics, view string) bool {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "view" && l.GetValue() == view {
					return true
				}
			}
		}
	}
	return false
}
