// Package debounce decides when each view's refresh may start.
//
// It is pure and clock-injected: it talks to no database, starts no
// goroutines and sets no timers. The owner feeds it changes and requests,
// asks Due for the views that may start now, reports Start and Finish, and
// sleeps until Next. A Debouncer is not safe for concurrent use: one owner
// goroutine calls it.
package debounce

import (
	"sort"
	"time"
)

// Settings are the timing rules of one view.
type Settings struct {
	Quiet       time.Duration // wait this long after the last change
	MaxWait     time.Duration // but start no later than this after the first pending change (0 = no bound)
	MinInterval time.Duration // least time between two starts of one view (a start put off does not count)
}

type view struct {
	s     Settings
	bases []string

	pending     bool
	firstChange time.Time // first change since the view became pending
	lastChange  time.Time
	requested   bool
	requestAt   time.Time // earliest Request while pending
	retrying    bool      // pending by Retry, with no change since
	retryAt     time.Time

	running   bool
	started   bool // lastStart is set
	lastStart time.Time
	// startedBefore and startBefore are started and lastStart before the
	// running start, restored if it ran nothing (PutOff).
	startedBefore bool
	startBefore   time.Time
	// startedBases are the bases counted in their runningDependents when
	// the view started; runningDependents counts running views listing
	// this one as a base.
	startedBases      []string
	runningDependents int
}

// Debouncer tracks pending and running views and their timers.
type Debouncer struct {
	now    func() time.Time
	views  map[string]*view
	behind bool
}

// SetBehind tells whether the changes arriving are a backlog (the stream is
// catching up). While behind, a quiet period never ends: a refresh in the
// middle of a backlog is stale as soon as it is done and takes CPU from the
// server sending the rest. Views wait for the stream to catch up, or for
// their max wait. Requests (manual, cascade, startup) and retries are not
// held back.
func (d *Debouncer) SetBehind(behind bool) { d.behind = behind }

// never is a time no view waits for: a Next this far away means nothing
// becomes due by the passage of time alone before something else happens.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// New takes the clock; production passes time.Now, tests a fake.
func New(now func() time.Time) *Debouncer {
	return &Debouncer{now: now, views: make(map[string]*view)}
}

// Set registers or updates a view. bases are views that must not be running
// when this view starts (its base materialized views, transitively), nor
// pending with older work until this view's max wait runs out; unknown names
// in bases are allowed (they simply never block), and the view itself is
// ignored if listed. Updating keeps the
// pending and running state; the new settings apply at once.
func (d *Debouncer) Set(name string, s Settings, bases []string) {
	bs := make([]string, 0, len(bases))
	for _, b := range bases {
		if b != name {
			bs = append(bs, b)
		}
	}
	if v, ok := d.views[name]; ok {
		v.s, v.bases = s, bs
		return
	}
	d.views[name] = &view{s: s, bases: bs}
}

// Remove forgets a view (dropped). A running view's later Finish is a no-op.
// Views listing it as a base are no longer blocked by it.
func (d *Debouncer) Remove(name string) {
	if v, ok := d.views[name]; ok && v.running {
		d.uncount(v)
	}
	delete(d.views, name)
}

// Change records a change for the view at now: the view becomes pending
// (first change time kept, last change time = now). Unknown views are ignored
// and Change reports false.
func (d *Debouncer) Change(name string) bool {
	v, ok := d.views[name]
	if !ok {
		return false
	}
	now := d.now()
	if !v.pending {
		v.pending = true
		v.firstChange = now
	}
	v.lastChange = now
	v.retrying = false
	return true
}

// Retry makes a view pending and due at `at`, ignoring the quiet period and
// max wait: the backoff after a failed refresh. A change before then makes
// it due by the usual rules instead, so that a failing view is retried on
// its next change as well as on backoff. Unknown views: false.
func (d *Debouncer) Retry(name string, at time.Time) bool {
	v, ok := d.views[name]
	if !ok {
		return false
	}
	if !v.pending {
		now := d.now()
		v.pending = true
		v.firstChange, v.lastChange = now, now
	}
	v.retrying, v.retryAt = true, at
	return true
}

// Request makes a view pending and ready without a quiet period (manual
// request, cascade after its base refreshed, startup). It still waits for
// the minimum interval and for a running refresh of itself and its bases.
// Repeated requests keep the earliest request time. Unknown views: false.
func (d *Debouncer) Request(name string) bool {
	v, ok := d.views[name]
	if !ok {
		return false
	}
	now := d.now()
	if !v.pending {
		v.pending = true
		v.firstChange = now
		v.lastChange = now
	}
	if !v.requested {
		v.requested = true
		v.requestAt = now
	}
	return true
}

// Due lists the views that may start now: pending, not running, no base
// running or pending with older work (see Set), quiet period over (or max wait reached, or requested),
// minimum interval since the previous start elapsed. Ordered by first
// pending change, oldest first, ties by name. It does not change state.
func (d *Debouncer) Due() []string {
	now := d.now()
	var due []string
	for name, v := range d.views {
		if at, ok := d.dueAt(v, now); ok && !at.After(now) {
			due = append(due, name)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := d.views[due[i]], d.views[due[j]]
		if !a.firstChange.Equal(b.firstChange) {
			return a.firstChange.Before(b.firstChange)
		}
		return due[i] < due[j]
	})
	return due
}

// Start marks a view running: its pending state is cleared (changes arriving
// from now on make it pending again, for one more refresh after this one)
// and now is the start time used for the minimum interval. Unknown views are
// ignored.
func (d *Debouncer) Start(name string) {
	v, ok := d.views[name]
	if !ok {
		return
	}
	v.pending, v.requested, v.retrying = false, false, false
	v.firstChange, v.lastChange, v.requestAt = time.Time{}, time.Time{}, time.Time{}
	v.running = true
	v.startedBefore, v.startBefore = v.started, v.lastStart
	v.started = true
	v.lastStart = d.now()
	v.startedBases = v.bases
	for _, b := range v.bases {
		if bv, ok := d.views[b]; ok {
			bv.runningDependents++
		}
	}
}

// uncount undoes what Start counted for a running view in its bases.
func (d *Debouncer) uncount(v *view) {
	for _, b := range v.startedBases {
		if bv, ok := d.views[b]; ok && bv.runningDependents > 0 {
			bv.runningDependents--
		}
	}
	v.startedBases = nil
}

// Finish marks the running refresh of a view done. Unknown or removed views
// are ignored.
func (d *Debouncer) Finish(name string) {
	if v, ok := d.views[name]; ok && v.running {
		d.uncount(v)
		v.running = false
	}
}

// PutOff marks the running refresh of a view done without having run
// (the changes it was to cover were not visible yet): it does not count
// for the minimum interval, which counts from the start before it. Unknown
// or removed views are ignored.
func (d *Debouncer) PutOff(name string) {
	if v, ok := d.views[name]; ok && v.running {
		d.Finish(name)
		v.started, v.lastStart = v.startedBefore, v.startBefore
	}
}

// Next reports the earliest time at which some pending view becomes due by
// the passage of time alone (its quiet period, max wait, retry or minimum
// interval, or the max wait that ends a pending base's hold on it). It may be <= now, meaning
// Due is non-empty. ok is false when no such view exists, i.e. nothing can
// become due by the passage of time alone.
func (d *Debouncer) Next() (at time.Time, ok bool) {
	now := d.now()
	for _, v := range d.views {
		if r, due := d.dueAt(v, now); due && (!ok || r.Before(at)) {
			at, ok = r, true
		}
	}
	return at, ok
}

// Pending reports whether the view has changes or a request not yet taken by
// a Start.
func (d *Debouncer) Pending(name string) bool {
	v, ok := d.views[name]
	return ok && v.pending
}

// Running reports whether the view was started and not yet finished.
func (d *Debouncer) Running(name string) bool {
	v, ok := d.views[name]
	return ok && v.running
}

// PendingCount returns the number of pending views; running views with new
// changes count too.
func (d *Debouncer) PendingCount() int {
	n := 0
	for _, v := range d.views {
		if v.pending {
			n++
		}
	}
	return n
}

// dueAt is when v becomes due if nothing else happens: when its timers
// say, or later if a pending base holds it back until its max wait runs out.
// ok is false when only something else can make it due: a change or
// request, a running refresh finishing, the stream catching up. A view built
// on v running holds v back too: a dependent's refresh must not overlap its
// base's, or the dependent reads a base older than the one the log says it
// caught up on.
func (d *Debouncer) dueAt(v *view, now time.Time) (at time.Time, ok bool) {
	if !v.pending || v.running || v.runningDependents > 0 {
		return never, false
	}
	at = v.readyAt(d.behind)
	for _, b := range v.bases {
		bv, known := d.views[b]
		if !known || !d.blocks(bv, v, now) {
			continue
		}
		if bv.running || v.s.MaxWait <= 0 {
			return never, false
		}
		if w := v.firstChange.Add(v.s.MaxWait); w.After(at) {
			at = w
		}
	}
	return at, !at.Equal(never)
}

// blocks reports whether base b holds back its dependent v at now. A running
// base always does. A pending base does only while its work is at least as
// old as v's and v's max wait has not run out: refreshing v after b saves a
// second refresh of v, but a base that is pending again whenever it finishes
// (writes during each of its refreshes) would otherwise keep v from ever
// starting, and v's hold would pin the slot.
func (d *Debouncer) blocks(b, v *view, now time.Time) bool {
	switch {
	case b.running:
		return true
	case !b.pending:
		return false
	case b.retrying && b.retryAt.After(now):
		// A base waiting out a retry backoff does not block, or a base that
		// keeps failing would keep its dependents stale forever; once its
		// retry is due it does, or dependents that keep running would put
		// the retry off forever.
		return false
	case b.firstChange.After(v.firstChange):
		return false // v's work is older: b's newer changes will cascade later
	}
	return !v.maxWaitOver(now)
}

// maxWaitOver reports whether a pending view has waited its max wait.
func (v *view) maxWaitOver(now time.Time) bool {
	return v.s.MaxWait > 0 && !now.Before(v.firstChange.Add(v.s.MaxWait))
}

// Startable reports whether the view may start now. Due lists several
// views at once; after starting one, the others must be asked again (a
// base and its dependent can both be due, but not both start).
func (d *Debouncer) Startable(name string) bool {
	v, ok := d.views[name]
	if !ok {
		return false
	}
	now := d.now()
	at, due := d.dueAt(v, now)
	return due && !at.After(now)
}

// MinIntervalHold is how long the minimum interval has held a pending view
// back past the time its quiet period, max wait, retry or request made it
// due: 0 when it did not. Ask before Start, which clears the pending state.
func (d *Debouncer) MinIntervalHold(name string) time.Duration {
	v, ok := d.views[name]
	if !ok || !v.pending || !v.started {
		return 0
	}
	ready, allowed := v.readyIgnoringMinInterval(d.behind), v.lastStart.Add(v.s.MinInterval)
	if !ready.Before(allowed) {
		return 0
	}
	if now := d.now(); now.Before(allowed) {
		return now.Sub(ready)
	}
	return allowed.Sub(ready)
}

// readyAt is the time a pending view becomes due, ignoring bases and
// running state.
func (v *view) readyAt(behind bool) time.Time {
	r := v.readyIgnoringMinInterval(behind)
	if v.started {
		if m := v.lastStart.Add(v.s.MinInterval); m.After(r) {
			r = m
		}
	}
	return r
}

// readyIgnoringMinInterval is readyAt without the minimum interval.
func (v *view) readyIgnoringMinInterval(behind bool) time.Time {
	r := v.lastChange.Add(max(v.s.Quiet, 0))
	if behind {
		r = never
	}
	if v.s.MaxWait > 0 {
		if w := v.firstChange.Add(v.s.MaxWait); w.Before(r) {
			r = w
		}
	}
	if v.retrying {
		r = v.retryAt
	}
	if v.requested && v.requestAt.Before(r) {
		r = v.requestAt
	}
	return r
}
