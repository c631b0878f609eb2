package schedule

import (
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// work is what one refresh of a view must cover: the changes that arrived
// since the view's previous refresh started.
type work struct {
	reason        events.Reason
	changes       int
	firstChangeAt time.Time
	// lsn is the end of the newest transaction covered.
	lsn     pglogrepl.LSN
	sources []string
	// hold keeps the slot from confirming past holdLSN, the commit of the
	// oldest transaction covered, until the refresh is done or its failure
	// recorded. Zero when the work covers no transaction (startup).
	hold    replication.Hold
	holdLSN pglogrepl.LSN
	// owedFrom is the end of the oldest transaction covered, or where the
	// oldest unseen commit starts: until the work is refreshed, the view is
	// fresh through no position at or past it. It stays when a recorded
	// failure releases the hold. owesAll: the work covers changes the
	// stream did not bring (startup, a new partition), so the view is fresh
	// through nothing the daemon can vouch for.
	owedFrom pglogrepl.LSN
	owesAll  bool
	attempt  int
	// Why a refresh may have missed its staleness target: baseAttempts is
	// the most attempts a base's refresh cascading into this one took;
	// waitedForWorker and waitedForRelated are set when the view was due but
	// no worker was free, or a base or dependent of it ran.
	baseAttempts     int
	planned          time.Duration // the duration estimate when it started
	waitedForWorker  bool
	waitedForRelated bool
	// txns are the transactions covered, to check that the refresh's
	// snapshot sees them: a range of the scheduler's log, which may hold
	// other views' transactions in between (see txnRange). unconditional:
	// the work covers more than txns (a startup, a cascade, a partition
	// change, transactions known to be visible), so the refresh runs even
	// if its snapshot sees none of them.
	txns          txnRange
	unconditional bool
	// unseenSince is when a refresh first found a commit of txns not yet
	// visible; unseenTries counts such refreshes, for the backoff.
	unseenSince  time.Time
	unseenTries  int
	unseenNoted  bool
	unseenWarned bool
	// barrier: the refresh waits for transactions the stream cannot carry.
	barrier txnBarrier
}

// reasonRank orders reasons when work merges: the event names the most
// deliberate one.
var reasonRank = map[events.Reason]int{
	events.ReasonCascade: 1,
	events.ReasonChange:  2,
	events.ReasonManual:  3,
	events.ReasonStartup: 4,
}

func (w *work) raise(r events.Reason) {
	if reasonRank[r] > reasonRank[w.reason] {
		w.reason = r
	}
}

func (w *work) addSource(name string) {
	if name != "" && !slices.Contains(w.sources, name) {
		w.sources = append(w.sources, name)
	}
}

// addTxn records that the work covers the transaction seq of the
// scheduler's log.
func (w *work) addTxn(seq refresher.Seq) {
	w.txns = w.txns.with(seq, seq)
}

// noteChange records when the oldest change covered was committed.
func (w *work) noteChange(at time.Time) {
	if !at.IsZero() && (w.firstChangeAt.IsZero() || at.Before(w.firstChangeAt)) {
		w.firstChangeAt = at
	}
}

// owe notes that the view is not fresh through lsn until the work is done.
func (w *work) owe(lsn pglogrepl.LSN) {
	if w.owedFrom == 0 || lsn < w.owedFrom {
		w.owedFrom = lsn
	}
}

// oweFrom merges other's debt into w.
func (w *work) oweFrom(other *work) {
	if other.owedFrom != 0 {
		w.owe(other.owedFrom)
	}
	w.owesAll = w.owesAll || other.owesAll
}

// holdAt makes the work hold the slot at commitLSN unless it already holds
// an older position.
func (w *work) holdAt(wm *replication.Watermark, commitLSN pglogrepl.LSN) {
	if w.hold != 0 && w.holdLSN <= commitLSN {
		return
	}
	old := w.hold
	w.hold, w.holdLSN = wm.Hold(commitLSN), commitLSN
	wm.Release(old)
}

// release lets the slot pass everything the work covered.
func (w *work) release(wm *replication.Watermark) {
	wm.Release(w.hold)
	w.hold, w.holdLSN = 0, 0
}

// absorb merges other (work for the same view) into w, keeping the older
// hold.
func (w *work) absorb(wm *replication.Watermark, other *work) {
	w.raise(other.reason)
	w.changes += other.changes
	w.noteChange(other.firstChangeAt)
	w.lsn = max(w.lsn, other.lsn)
	for _, s := range other.sources {
		w.addSource(s)
	}
	if other.hold != 0 {
		w.holdAt(wm, other.holdLSN)
		other.release(wm)
	}
	w.oweFrom(other)
	w.attempt = max(w.attempt, other.attempt)
	w.baseAttempts = max(w.baseAttempts, other.baseAttempts)
	w.waitedForWorker = w.waitedForWorker || other.waitedForWorker
	w.waitedForRelated = w.waitedForRelated || other.waitedForRelated
	w.txns = w.txns.with(other.txns.first, other.txns.last)
	w.unconditional = w.unconditional || other.unconditional
	if !other.unseenSince.IsZero() && (w.unseenSince.IsZero() || other.unseenSince.Before(w.unseenSince)) {
		w.unseenSince = other.unseenSince
	}
	w.unseenTries = max(w.unseenTries, other.unseenTries)
	w.unseenNoted = w.unseenNoted || other.unseenNoted
	w.unseenWarned = w.unseenWarned || other.unseenWarned
	w.barrier.merge(other.barrier)
}
