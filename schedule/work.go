package schedule

import (
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// work is what one refresh of a view must cover: the changes that arrived
// since the view's previous refresh started. Work for one view merges
// (absorb); a base's work passes on to its dependents (inherit). Each group
// of fields merges through its own method, so that a field added to a
// group cannot be forgotten by one of them.
type work struct {
	reason        events.Reason
	changes       int
	firstChangeAt time.Time
	// lsn is the end of the newest transaction covered.
	lsn     pglogrepl.LSN
	sources []string
	attempt int
	debt    debt
	// txns are the transactions covered, to check that the refresh's
	// snapshot sees them: a range of the scheduler's log, which may hold
	// other views' transactions in between (see txnRange). unconditional:
	// the work covers more than txns (a startup, a cascade, a partition
	// change, transactions known to be visible), so the refresh runs even
	// if its snapshot sees none of them.
	txns          txnRange
	unconditional bool
	// unseen is the wait for commits of txns a refresh's snapshot did not
	// see yet; barrier the wait for transactions the stream cannot carry.
	unseen  retryWait
	barrier txnBarrier
	late    lateCauses
	// follow is what a maintenance of a view maintained incrementally
	// follows: the changed rows, or why it recomputes the view whole. Any
	// reason but a change to a source escalates it.
	follow maintain.Changes
}

// debt is what the work owes the slot and the view's readers.
type debt struct {
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
}

// holdAt makes the debt hold the slot at commitLSN unless it already holds
// an older position.
func (d *debt) holdAt(wm *replication.Watermark, commitLSN pglogrepl.LSN) {
	if d.hold != 0 && d.holdLSN <= commitLSN {
		return
	}
	old := d.hold
	d.hold, d.holdLSN = wm.Hold(commitLSN), commitLSN
	wm.Release(old)
}

// release lets the slot pass everything the work covered.
func (d *debt) release(wm *replication.Watermark) {
	wm.Release(d.hold)
	d.hold, d.holdLSN = 0, 0
}

// owe notes that the view is not fresh through lsn until the work is done.
func (d *debt) owe(lsn pglogrepl.LSN) {
	if d.owedFrom == 0 || lsn < d.owedFrom {
		d.owedFrom = lsn
	}
}

// inherit makes d owe what other owes, and hold the slot where other holds
// it too: other keeps its hold.
func (d *debt) inherit(wm *replication.Watermark, other debt) {
	if other.owedFrom != 0 {
		d.owe(other.owedFrom)
	}
	d.owesAll = d.owesAll || other.owesAll
	if other.hold != 0 {
		d.holdAt(wm, other.holdLSN)
	}
}

// absorb takes other's debt over: other's hold is released.
func (d *debt) absorb(wm *replication.Watermark, other *debt) {
	d.inherit(wm, *other)
	other.release(wm)
}

// retryWait is a wait retried with backoff: since when, how many tries,
// and whether it was logged at info (noted) and at warn (warned).
type retryWait struct {
	since         time.Time
	tries         int
	noted, warned bool
}

func (r *retryWait) merge(o retryWait) {
	if !o.since.IsZero() && (r.since.IsZero() || o.since.Before(r.since)) {
		r.since = o.since
	}
	r.tries = max(r.tries, o.tries)
	r.noted = r.noted || o.noted
	r.warned = r.warned || o.warned
}

// lateCauses are why a refresh may have missed its staleness target.
type lateCauses struct {
	// baseAttempts is the most attempts a base's refresh cascading into
	// this one took.
	baseAttempts int
	// waitedForWorker and waitedForRelated are set when the view was due
	// but no worker was free, or a base or dependent of it ran.
	waitedForWorker  bool
	waitedForRelated bool
	// heldByMinInterval is how long min_interval kept the view from
	// starting after it was due (the longest, over the starts merged).
	heldByMinInterval time.Duration
	// planned is the duration estimate when the refresh started, set at
	// each start: not merged.
	planned time.Duration
}

func (l *lateCauses) merge(o lateCauses) {
	l.baseAttempts = max(l.baseAttempts, o.baseAttempts)
	l.waitedForWorker = l.waitedForWorker || o.waitedForWorker
	l.waitedForRelated = l.waitedForRelated || o.waitedForRelated
	l.heldByMinInterval = max(l.heldByMinInterval, o.heldByMinInterval)
}

// reasonRank orders reasons when work merges: the event names the most
// deliberate one.
var reasonRank = map[events.Reason]int{
	events.ReasonPeriodic: 1,
	events.ReasonCascade:  2,
	events.ReasonChange:   3,
	events.ReasonManual:   4,
	events.ReasonStartup:  5,
}

// escalations say why work for a reason other than a change recomputes a
// maintained view whole.
var escalations = map[events.Reason]string{
	events.ReasonPeriodic: "refresh_every",
	events.ReasonCascade:  "a view it reads was refreshed",
	events.ReasonManual:   "a refresh request",
	events.ReasonStartup:  "startup: earlier changes were not streamed",
}

// addReason makes r the work's reason if it is more deliberate than the
// one it has.
func (w *work) addReason(r events.Reason) {
	if r != events.ReasonChange {
		w.follow.Escalate(escalations[r])
	}
	w.rankReason(r)
}

// rankReason is addReason for a reason whose work follows changed rows.
func (w *work) rankReason(r events.Reason) {
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

// addChanges adds what other covers to what w covers.
func (w *work) addChanges(other *work) {
	w.changes += other.changes
	w.noteChange(other.firstChangeAt)
	w.lsn = max(w.lsn, other.lsn)
}

// absorb merges other (work for the same view) into w, keeping the older
// hold. Its reason only ranks: what other follows already carries any
// escalation the reason calls for (addReason made it, or inherit's via
// said why a cascade cannot follow the base), and a cascade that follows
// the base's named rows must follow them again when retried.
func (w *work) absorb(wm *replication.Watermark, other *work) {
	w.rankReason(other.reason)
	w.addChanges(other)
	for _, s := range other.sources {
		w.addSource(s)
	}
	w.attempt = max(w.attempt, other.attempt)
	w.debt.absorb(wm, &other.debt)
	w.txns = w.txns.with(other.txns.first, other.txns.last)
	w.unconditional = w.unconditional || other.unconditional
	w.unseen.merge(other.unseen)
	w.barrier.merge(other.barrier)
	w.late.merge(other.late)
	w.follow.Merge(&other.follow)
}

// inherit adds to w, a dependent's work, what its base's refresh covered:
// base (the base's name) is the source, and w holds the slot where base's
// work does, so the slot cannot pass a change before the cascade is done
// too. It runs whatever its snapshot sees. The base's visibility and
// barrier waits are its own: it ran. via is what a maintained dependent
// follows of a maintained base's maintenance (the rows it named, or why
// not); nil recomputes the dependent whole.
func (w *work) inherit(wm *replication.Watermark, base string, bw *work, via *maintain.Changes) {
	if via != nil {
		w.rankReason(events.ReasonCascade)
		w.follow.Merge(via)
	} else {
		w.addReason(events.ReasonCascade)
	}
	w.addChanges(bw)
	w.addSource(base)
	w.debt.inherit(wm, bw.debt)
	w.unconditional = true
	w.late.merge(lateCauses{baseAttempts: max(bw.attempt, bw.late.baseAttempts)})
}

// retryPolicy is how a retryWait backs off, from base doubling up to most,
// and when it is worth a line: every wait's first try at debug, once at
// info after noteAfter, once at warn after warnAfter.
type retryPolicy struct {
	base, most           time.Duration
	noteAfter, warnAfter time.Duration
}

// try counts a try at now and returns how long the wait has lasted and
// the delay until the next try.
func (r *retryWait) try(now time.Time, p retryPolicy) (waited, delay time.Duration) {
	if r.since.IsZero() {
		r.since = now
	}
	r.tries++
	delay = p.most
	if r.tries < 10 {
		delay = min(p.base<<(r.tries-1), p.most)
	}
	return now.Sub(r.since), delay
}

// logLevel is the level to log the try that made the wait last waited at;
// false when it is not worth a line.
func (r *retryWait) logLevel(waited time.Duration, p retryPolicy) (slog.Level, bool) {
	switch {
	case r.tries == 1:
		return slog.LevelDebug, true
	case waited >= p.warnAfter && !r.warned:
		r.warned = true
		return slog.LevelWarn, true
	case waited >= p.noteAfter && !r.noted:
		r.noted = true
		return slog.LevelInfo, true
	}
	return 0, false
}
