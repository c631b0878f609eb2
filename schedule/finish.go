package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// finish applies the outcome of a refresh: the slot, the view's
// fresh-through position, the cascade to its dependents, a retry.
func (s *Scheduler) finish(r result) {
	w := s.running[r.view]
	delete(s.running, r.view)
	s.free++
	view := s.catalog.Views[r.view]
	out := r.outcome
	defer s.pruneTxns(out.VisibleBefore)
	if out.Deferred {
		// Nothing ran: min_interval must not put off the visibility retry.
		s.debouncer.PutOff(r.view)
		if view == nil {
			w.debt.release(s.watermark) // dropped meanwhile
			return
		}
		w.attempt-- // nothing ran
		if out.WaitsFor != 0 {
			s.awaitBarrier(r.view, w, out.WaitsFor)
			return
		}
		s.awaitVisibility(r.view, w, out.UnseenTxn)
		return
	}
	s.debouncer.Finish(r.view)
	// Reported once the outcome is applied: the event carries the view's
	// fresh-through position after it.
	defer s.report(r.view, view, w, out)
	switch {
	case out.Err == nil:
		if s.planner.observeDuration(r.view, outcomeKind(out), out.FinishedAt.Sub(out.StartedAt)) {
			s.replan()
		}
		if out.Unseen != 0 && view != nil {
			// What the snapshot did not see is owed again, from the oldest
			// unseen transaction on; the cascade carries only what it saw.
			unseen := &work{reason: events.ReasonChange, firstChangeAt: w.firstChangeAt,
				lsn: w.lsn, txns: txnRange{out.Unseen, w.txns.last}, unseen: retryWait{since: w.unseen.since, tries: w.unseen.tries}}
			// Which rows the unseen transactions changed is not told apart
			// from the others': following them all again is harmless.
			unseen.follow.Merge(&w.follow)
			unseen.debt.holdAt(s.watermark, out.LSN) // the oldest unseen commit
			unseen.debt.owe(out.LSN)
			s.awaitVisibility(r.view, unseen, out.UnseenTxn)
			w.lsn = out.LSN
		}
		// Dependents take over the hold before it is released, so the slot
		// cannot pass the change before the cascade is done too.
		for _, dep := range s.catalog.Dependents(r.view) {
			s.cascade(dep, r.view, w, out.Maintained)
		}
		w.debt.release(s.watermark)
	case view == nil:
		w.debt.release(s.watermark) // dropped while it ran
	default:
		switch refresher.SQLState(out.Err) {
		case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow:
			s.gone = fmt.Errorf("%w: %w", ErrServerGoingAway, out.Err)
		}
		// A failure in the log releases the slot: a persistently failing view
		// must not retain WAL. A failure that could not be recorded (the
		// database is unreachable) keeps its hold. Either way the view is
		// retried with backoff, and sooner on its next change.
		if out.Recorded {
			w.debt.release(s.watermark)
		}
		s.pendingWork(r.view).absorb(s.watermark, w)
		s.debouncer.Retry(r.view, s.now.Add(retryBackoff(w.attempt)))
	}
}

// Retry backoff after failed refreshes: 1s, 2s, 4s, ... up to 5 minutes,
// with jitter so that views failing together do not retry together.
const (
	retryBackoffBase = time.Second
	retryBackoffMax  = 5 * time.Minute
)

func retryBackoff(attempt int) time.Duration {
	d := retryBackoffMax
	if attempt >= 1 && attempt < 20 {
		d = min(retryBackoffBase<<(attempt-1), retryBackoffMax)
	}
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// Visibility waits: a commit the server sent but other sessions do not see
// yet is normally visible within a millisecond (a synchronous standby's
// reply); one that is not waits for a standby that lags or is down. A
// healthy synchronous standby makes a commit visible within a millisecond
// or so: worth more than a debug line only once the wait is noticeable.
var visibilityRetry = retryPolicy{base: 10 * time.Millisecond, most: time.Second, noteAfter: time.Second, warnAfter: 10 * time.Second}

var visibilityMessages = map[slog.Level]string{
	slog.LevelDebug: "a commit to refresh is not visible yet: waiting for it",
	slog.LevelInfo:  "a commit to refresh is not visible yet (a synchronous standby has not confirmed it?): waiting for it",
	slog.LevelWarn:  "a commit to refresh is still not visible: the refresh waits for it and the slot holds its WAL (is a synchronous standby down?)",
}

// awaitVisibility makes unseen, work (holding the slot before its commits)
// whose commits a refresh's snapshot did not see, oldest the first of
// them, pending again, and retries it with backoff. The wait takes no
// worker and holds no snapshot: each try is a new transaction that either
// sees the commits or puts itself off again.
func (s *Scheduler) awaitVisibility(name string, unseen *work, oldest refresher.Txn) {
	waited, delay := unseen.unseen.try(s.now, visibilityRetry)
	if level, ok := unseen.unseen.logLevel(waited, visibilityRetry); ok {
		s.logger.Log(context.Background(), level, visibilityMessages[level], "view", name, "xid", oldest.Xid,
			"commit_lsn", oldest.CommitLSN.String(), "waited", waited.Round(time.Millisecond).String())
	}
	s.metrics.VisibilityWaits.WithLabelValues(name).Inc()
	s.pendingWork(name).absorb(s.watermark, unseen)
	s.debouncer.Retry(name, s.now.Add(delay))
}

// cascade makes dep owe a refresh after its base's, w. A maintained dep
// follows the rows a maintained base's maintenance (maintained) named, or
// is recomputed whole, with why; any other is refreshed whole.
func (s *Scheduler) cascade(dep, base string, w *work, maintained *maintain.Result) {
	if s.catalog.Views[dep] == nil {
		return
	}
	var via *maintain.Changes
	if m, b := s.maintenance[dep], s.maintenance[base]; m != nil && m.Plan != nil && b != nil && b.Plan != nil && maintained != nil {
		via = &maintain.Changes{}
		via.FollowTable(m.Plan, b.Plan, maintained.Named)
	}
	s.pendingWork(dep).inherit(s.watermark, base, w, via)
	s.debouncer.Request(dep)
}
