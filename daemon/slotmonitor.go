package daemon

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// monitorSlot reads the slot at once and then every slot_check_interval: it
// exports lag and retained WAL, publishes them on <prefix>.slot.<slot>, and
// warns when the slot retains more than slot_warn_mb.
func (d *Daemon) monitorSlot(ctx context.Context, pool *pgxpool.Pool, sched *schedule.Scheduler, sink eventSink) {
	ticker := time.NewTicker(d.cfg.SlotCheckInterval)
	defer ticker.Stop()
	warned := false
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
		s, err := replication.ReadSlot(ctx, pool, d.cfg.Slot)
		if err != nil {
			if ctx.Err() == nil {
				d.logger.Warn("read replication slot", "error", err)
			}
			continue
		}
		e := events.Slot{Slot: s.Name, Active: s.Active, ConfirmedFlushLSN: deref(s.ConfirmedFlushLSN), CurrentWALLSN: s.CurrentWALLSN,
			LagBytes: deref(s.LagBytes), RetainedBytes: deref(s.RetainedBytes), WALStatus: deref(s.WALStatus), SafeWALSize: s.SafeWALSize,
			InvalidationReason: deref(s.InvalidationReason),
			PendingViews:       sched.PendingViews(), At: time.Now().UTC()}
		d.metrics.SlotLagBytes.WithLabelValues(s.Name).Set(float64(e.LagBytes))
		d.metrics.SlotRetainedBytes.WithLabelValues(s.Name).Set(float64(e.RetainedBytes))
		active := 0.0
		if s.Active {
			active = 1
		}
		d.metrics.SlotActive.WithLabelValues(s.Name).Set(active)
		sink.PublishSlot(e)
		limit := int64(d.cfg.SlotWarnMB) << 20
		over := limit > 0 && e.RetainedBytes > limit
		switch {
		case over && !warned:
			d.logger.Warn("the replication slot retains a lot of WAL", "slot", s.Name, "retained_bytes", e.RetainedBytes,
				"slot_warn_mb", d.cfg.SlotWarnMB, "lag_bytes", e.LagBytes, "pending_views", e.PendingViews, "wal_status", e.WALStatus)
			warned = true
		case !over && warned:
			d.logger.Info("the replication slot is back under slot_warn_mb", "slot", s.Name, "retained_bytes", e.RetainedBytes)
			warned = false
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
