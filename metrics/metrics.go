// Package metrics defines the daemon's Prometheus metrics, on a registry of
// their own (no global state), with Go runtime and process metrics.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mvrefresher/mvrefresher/internal/buildinfo"
)

// Metrics are updated by the daemon and served on /metrics.
type Metrics struct {
	Registry *prometheus.Registry

	Refreshes         *prometheus.CounterVec   // view, status
	RefreshDuration   *prometheus.HistogramVec // view
	ViewStaleness     *prometheus.GaugeVec     // view
	RowsChanged       *prometheus.CounterVec   // view, op
	Maintenances      *prometheus.CounterVec   // view, mode
	ChurnRatio        *prometheus.GaugeVec     // view
	WALChanges        *prometheus.CounterVec   // table
	SlotLagBytes      *prometheus.GaugeVec     // slot
	SlotRetainedBytes *prometheus.GaugeVec     // slot
	SlotActive        *prometheus.GaugeVec     // slot
	VisibilityWaits   *prometheus.CounterVec   // view
	TargetMissed      *prometheus.CounterVec   // view
	PendingViews      prometheus.Gauge
	EventsDropped     prometheus.Counter
	LastSuccess       *prometheus.GaugeVec // view

	views *viewCounts
}

// New creates and registers the metrics. connected and standby report the
// instance's replication state when scraped.
func New(connected, standby func() bool) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_refreshes_total", Help: "Refresh attempts by view and status (ok, failed).",
		}, []string{"view", "status"}),
		RefreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mvrefresher_refresh_duration_seconds", Help: "Duration of successful refreshes.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5ms .. ~12min
		}, []string{"view"}),
		ViewStaleness: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_view_staleness_seconds", Help: "Age of the oldest change not yet refreshed into the view; 0 when clean.",
		}, []string{"view"}),
		RowsChanged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_rows_changed_total", Help: "Rows concurrent refreshes inserted and deleted in the view (op: inserted, deleted).",
		}, []string{"view", "op"}),
		Maintenances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_maintenances_total", Help: "Successful maintenances of views maintained incrementally, by mode: incremental (only the rows the changes named) or full (the whole view recomputed).",
		}, []string{"view", "mode"}),
		ChurnRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_view_churn_ratio", Help: "Share of the view's rows the last concurrent refresh rewrote; near 1 on every refresh means CONCURRENTLY saves nothing (a NOW() column?).",
		}, []string{"view"}),
		WALChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_wal_changes_total", Help: "Row changes read from the WAL, by source table (partitions count under their root).",
		}, []string{"table"}),
		SlotLagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_slot_lag_bytes", Help: "WAL the slot retains: current WAL position minus its confirmed position.",
		}, []string{"slot"}),
		SlotRetainedBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_slot_retained_bytes", Help: "WAL the server keeps for the slot: current WAL position minus its restart position.",
		}, []string{"slot"}),
		SlotActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_slot_active", Help: "1 while some process streams from the slot.",
		}, []string{"slot"}),
		VisibilityWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_visibility_waits_total", Help: "Refreshes put off or repeated because a commit they were for was not yet visible to their snapshot (a synchronous standby not confirming yet).",
		}, []string{"view"}),
		TargetMissed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mvrefresher_staleness_target_missed_total", Help: "Refreshes that finished later after their oldest change's commit than the view's effective max_staleness.",
		}, []string{"view"}),
		PendingViews: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mvrefresher_pending_views", Help: "Views with changes waiting for a refresh.",
		}),
		EventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mvrefresher_events_dropped_total", Help: "Refresh events not published because NATS was unreachable for too long (buffer full or retries exhausted).",
		}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mvrefresher_last_success_timestamp_seconds", Help: "When the view's last successful refresh finished, in seconds since the Unix epoch.",
		}, []string{"view"}),
		views: &viewCounts{
			gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "mvrefresher_views", Help: `Views by state: managed (reason ""), or unmanaged with the reason (check's code, such as no-replica-identity); a view with two reasons counts under each.`,
			}, []string{"state", "reason"}),
			reasons: map[string]bool{},
		},
	}
	build := buildinfo.Read()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mvrefresher_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": build.Version, "commit": build.Commit, "goversion": build.GoVersion},
	})
	buildInfo.Set(1)
	m.Registry.MustRegister(
		m.Refreshes, m.RefreshDuration, m.ViewStaleness, m.RowsChanged, m.Maintenances, m.ChurnRatio, m.WALChanges,
		m.SlotLagBytes, m.SlotRetainedBytes, m.SlotActive, m.VisibilityWaits, m.TargetMissed, m.PendingViews, m.EventsDropped,
		m.LastSuccess, m.views.gauge, buildInfo,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mvrefresher_replication_connected", Help: "1 while this instance streams from its slot.",
		}, boolGauge(connected)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mvrefresher_standby", Help: "1 while another instance holds the slot and this one waits to take over.",
		}, boolGauge(standby)),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// SetViews sets mvrefresher_views: managed views, and per reason the
// unmanaged views. A reason seen before and gone now stays, at 0, so that
// an alert on it resolves rather than loses its series.
func (m *Metrics) SetViews(managed int, unmanaged map[string]int) {
	v := m.views
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gauge.WithLabelValues("managed", "").Set(float64(managed))
	for reason := range unmanaged {
		v.reasons[reason] = true
	}
	for reason := range v.reasons {
		v.gauge.WithLabelValues("unmanaged", reason).Set(float64(unmanaged[reason]))
	}
}

// viewCounts is mvrefresher_views and the reasons it has shown.
type viewCounts struct {
	mu      sync.Mutex
	gauge   *prometheus.GaugeVec // state, reason
	reasons map[string]bool
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func boolGauge(f func() bool) func() float64 {
	return func() float64 {
		if f() {
			return 1
		}
		return 0
	}
}

// ForgetView deletes every series of a view no longer managed: a dropped
// view's last success must not age into an alert, nor its counters linger
// until a restart.
func (m *Metrics) ForgetView(view string) {
	labels := prometheus.Labels{"view": view}
	m.Refreshes.DeletePartialMatch(labels)
	m.RefreshDuration.DeletePartialMatch(labels)
	m.ViewStaleness.DeletePartialMatch(labels)
	m.RowsChanged.DeletePartialMatch(labels)
	m.Maintenances.DeletePartialMatch(labels)
	m.ChurnRatio.DeletePartialMatch(labels)
	m.VisibilityWaits.DeletePartialMatch(labels)
	m.TargetMissed.DeletePartialMatch(labels)
	m.LastSuccess.DeletePartialMatch(labels)
}
