package schedule

import (
	"slices"
	"time"
)

// txnBarrier is a debt the stream cannot carry: the transactions that were
// writing to a view's source when it joined the publication (see
// refresher.Writers). The view's refresh waits until they have ended.
type txnBarrier struct {
	xids []uint64
	// since is when a refresh was first put off for them, tries how many
	// were; noted and warned: the wait was logged at info, at warn.
	since         time.Time
	tries         int
	noted, warned bool
}

func (b *txnBarrier) merge(o txnBarrier) {
	for _, x := range o.xids {
		if !slices.Contains(b.xids, x) {
			b.xids = append(b.xids, x)
		}
	}
	if !o.since.IsZero() && (b.since.IsZero() || o.since.Before(b.since)) {
		b.since = o.since
	}
	b.tries = max(b.tries, o.tries)
	b.noted = b.noted || o.noted
	b.warned = b.warned || o.warned
}

// Waits for a barrier: a transaction left open is the application's to
// end, so after the first seconds the tries come every few seconds.
const (
	barrierBackoffBase = 10 * time.Millisecond
	barrierBackoffMax  = 5 * time.Second
	barrierNoteAfter   = time.Second
	barrierWarnAfter   = 30 * time.Second
)

// awaitBarrier makes w, whose refresh was put off because xid (one of its
// barrier's transactions) still runs, pending again, and retries it with
// backoff. Like a visibility wait, it takes no worker and holds no
// snapshot.
func (s *Scheduler) awaitBarrier(name string, w *work, xid uint64) {
	b := &w.barrier
	if b.since.IsZero() {
		b.since = s.now
	}
	b.tries++
	waited := s.now.Sub(b.since)
	// The 32-bit id, as pg_stat_activity.backend_xid shows it.
	attrs := []any{"view", name, "xid", uint32(xid), "waited", waited.Round(time.Millisecond).String()}
	const why = "a transaction that was writing to a source of the view when it joined the publication has not ended: its earlier writes to that table were not streamed, so the view's refresh waits for it"
	switch {
	case b.tries == 1:
		s.logger.Debug(why, attrs...)
	case waited >= barrierWarnAfter && !b.warned:
		b.warned = true
		s.logger.Warn(why+" (find it with: SELECT pid, state, xact_start FROM pg_stat_activity WHERE backend_xid = '<xid>')", attrs...)
	case waited >= barrierNoteAfter && !b.noted:
		b.noted = true
		s.logger.Info(why, attrs...)
	}
	s.pendingWork(name).absorb(s.watermark, w)
	delay := barrierBackoffMax
	if b.tries < 10 {
		delay = min(barrierBackoffBase<<(b.tries-1), barrierBackoffMax)
	}
	s.debouncer.Retry(name, s.now.Add(delay))
}
