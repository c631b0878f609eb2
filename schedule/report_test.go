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
