package schedule

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

// txnBarrier is a debt the stream cannot carry: the transactions that were
// writing to a view's source when it joined the publication (see
// refresher.Writers). The view's refresh waits until they have ended.
type txnBarrier struct {
	xids []uint64
	// wait is the wait for them: since a refresh was first put off for
	// them.
	wait retryWait
}

func (b *txnBarrier) merge(o txnBarrier) {
	for _, x := range o.xids {
		if !slices.Contains(b.xids, x) {
			b.xids = append(b.xids, x)
		}
	}
	b.wait.merge(o.wait)
}

// Waits for a barrier: a transaction left open is the application's to
// end, so after the first seconds the tries come every few seconds.
var barrierRetry = retryPolicy{base: 10 * time.Millisecond, most: 5 * time.Second, noteAfter: time.Second, warnAfter: 30 * time.Second}

const barrierWait = "a transaction that was writing to a source of the view when it joined the publication has not ended: its earlier writes to that table were not streamed, so the view's refresh waits for it"

var barrierMessages = map[slog.Level]string{
	slog.LevelDebug: barrierWait,
	slog.LevelInfo:  barrierWait,
	slog.LevelWarn:  barrierWait + " (find it with: SELECT pid, state, xact_start FROM pg_stat_activity WHERE backend_xid = '<xid>')",
}

// awaitBarrier makes w, whose refresh was put off because xid (one of its
// barrier's transactions) still runs, pending again, and retries it with
// backoff. Like a visibility wait, it takes no worker and holds no
// snapshot.
func (s *Scheduler) awaitBarrier(name string, w *work, xid uint64) {
	waited, delay := w.barrier.wait.try(s.now, barrierRetry)
	if level, ok := w.barrier.wait.logLevel(waited, barrierRetry); ok {
		// The 32-bit id, as pg_stat_activity.backend_xid shows it.
		s.logger.Log(context.Background(), level, barrierMessages[level],
			"view", name, "xid", uint32(xid), "waited", waited.Round(time.Millisecond).String())
	}
	s.pendingWork(name).absorb(s.watermark, w)
	s.debouncer.Retry(name, s.now.Add(delay))
}
