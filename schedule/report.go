package schedule

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// reporter logs, counts and publishes what the scheduler does, and keeps
// what the endpoints show of it. Only the scheduler's goroutine uses it.
type reporter struct {
	logger  *slog.Logger
	metrics *metrics.Metrics
	events  EventSink // nil: none
	// lastRefresh is each view's last refresh event, for the endpoints.
	lastRefresh map[string]*events.Refresh
	// warnedPlain: the views warned about refreshing without CONCURRENTLY.
	warnedPlain map[string]bool
	churn       *churn
	// startupTotal and startupDone count the startup refreshes, for the
	// progress the log shows.
	startupTotal, startupDone int
	// walChanges caches mvrefresher_wal_changes_total per source: looking a
	// label up for every change was a tenth of the daemon's CPU under
	// pgbench.
	walChanges map[string]prometheus.Counter
}

func newReporter(logger *slog.Logger, m *metrics.Metrics, sink EventSink, findings []catalog.Finding) *reporter {
	return &reporter{logger: logger, metrics: m, events: sink, lastRefresh: map[string]*events.Refresh{},
		warnedPlain: map[string]bool{}, churn: newChurn(findings), walChanges: map[string]prometheus.Counter{}}
}

// walChanged counts rows changed in source.
func (r *reporter) walChanged(source string, rows int) {
	counter, ok := r.walChanges[source]
	if !ok {
		counter = r.metrics.WALChanges.WithLabelValues(source)
		r.walChanges[source] = counter
	}
	counter.Add(float64(rows))
}

// forget drops what is kept of a view no longer managed, its metrics
// included.
func (r *reporter) forget(name string) {
	delete(r.lastRefresh, name)
	r.metrics.ForgetView(name)
}

// report logs and publishes the outcome of a refresh of w.
func (s *Scheduler) report(name string, view *catalog.View, w *work, out refresher.Outcome) {
	e := events.Refresh{
		View:          name,
		Status:        events.StatusOK,
		Reason:        w.reason,
		Concurrently:  out.Concurrently,
		StartedAt:     out.StartedAt.UTC(),
		FinishedAt:    out.FinishedAt.UTC(),
		DurationMS:    ms(out.FinishedAt.Sub(out.StartedAt)),
		LSN:           out.LSN.String(),
		Sources:       w.sources,
		Changes:       w.changes,
		FirstChangeAt: w.firstChangeAt.UTC(),
		RowsInserted:  out.RowsInserted,
		RowsDeleted:   out.RowsDeleted,
		Attempt:       w.attempt,
	}
	if e.Sources == nil {
		e.Sources = []string{}
	}
	if m := out.Maintained; m != nil {
		e.Maintenance, e.FullReason = m.Mode(), m.Full
		groups, written := m.Groups, m.Written()
		e.Groups, e.RowsWritten = &groups, &written
	}
	if through, ok := s.freshThrough(name); ok && view != nil {
		e.FreshThrough = through.String()
	}
	if !w.firstChangeAt.IsZero() {
		e.StalenessMS = ms(out.FinishedAt.Sub(w.firstChangeAt))
	}
	if out.Err != nil {
		e.Status, e.Error = events.StatusFailed, out.Err.Error()
	}
	s.reporter.refreshed(view, e, out)
	if out.Err == nil {
		s.checkTarget(name, w, out)
	}
}

// refreshed logs, counts and publishes e, the event of a refresh of view
// (nil: dropped since) with outcome out.
func (r *reporter) refreshed(view *catalog.View, e events.Refresh, out refresher.Outcome) {
	name := e.View
	attrs := []any{"view", name, "reason", e.Reason, "duration_ms", e.DurationMS, "concurrently", e.Concurrently}
	if out.Err != nil {
		r.logger.Error("refresh failed", append(attrs, "attempt", e.Attempt, "recorded", out.Recorded, "error", out.Err)...)
	} else {
		switch {
		case e.Maintenance != "":
			attrs = append(attrs, "maintenance", e.Maintenance, "groups", *e.Groups, "rows_written", *e.RowsWritten)
			if e.FullReason != "" {
				attrs = append(attrs, "full_reason", e.FullReason)
			}
		case out.RowsInserted != nil:
			attrs = append(attrs, "rows_inserted", *out.RowsInserted, "rows_deleted", *out.RowsDeleted)
		}
		if e.Reason == events.ReasonStartup && r.startupTotal > 0 {
			r.startupDone++
			attrs = append(attrs, "startup", fmt.Sprintf("%d/%d", r.startupDone, r.startupTotal))
		}
		r.logger.Info("refreshed", append(attrs, "changes", e.Changes, "staleness_ms", e.StalenessMS)...)
		if out.PlainReason != "" && !r.warnedPlain[name] {
			r.warnedPlain[name] = true
			r.logger.Warn("refreshing without CONCURRENTLY: readers wait for every refresh", "view", name, "why", out.PlainReason)
		}
	}
	r.metrics.Refreshes.WithLabelValues(name, string(e.Status)).Inc()
	if out.Err == nil {
		r.metrics.RefreshDuration.WithLabelValues(name).Observe(out.FinishedAt.Sub(out.StartedAt).Seconds())
		r.metrics.LastSuccess.WithLabelValues(name).Set(float64(out.FinishedAt.UnixNano()) / 1e9)
		if e.Maintenance != "" {
			r.metrics.Maintenances.WithLabelValues(name, e.Maintenance).Inc()
		}
		if out.RowsInserted != nil {
			r.metrics.RowsChanged.WithLabelValues(name, "inserted").Add(float64(*out.RowsInserted))
			r.metrics.RowsChanged.WithLabelValues(name, "deleted").Add(float64(*out.RowsDeleted))
		}
		if out.RowsInserted != nil && out.Maintained == nil { // a maintenance writes only rows that differ
			ratio, warn := r.churn.observe(name, *out.RowsInserted, *out.RowsDeleted, out.Rows)
			r.metrics.ChurnRatio.WithLabelValues(name).Set(ratio)
			if warn {
				r.logger.Warn("every concurrent refresh rewrites (nearly) every row: CONCURRENTLY saves nothing for this view",
					"view", name, "ratio", ratio, "rows", out.Rows, "likely_cause", r.churn.cause(name))
			}
		}
	}
	if view != nil {
		r.lastRefresh[name] = &e
		if r.events != nil {
			r.events.PublishRefresh(view.Schema, view.Relname, e)
		}
	}
}

// updateGauges refreshes the per-view staleness gauges, which grow with time.
func (s *Scheduler) updateGauges() {
	now := time.Now()
	for name := range s.catalog.Views {
		var oldest time.Time
		for _, w := range []*work{s.pending[name], s.running[name]} {
			if w != nil && !w.firstChangeAt.IsZero() && (oldest.IsZero() || w.firstChangeAt.Before(oldest)) {
				oldest = w.firstChangeAt
			}
		}
		staleness := 0.0
		if !oldest.IsZero() {
			staleness = now.Sub(oldest).Seconds()
		}
		s.metrics.ViewStaleness.WithLabelValues(name).Set(staleness)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
