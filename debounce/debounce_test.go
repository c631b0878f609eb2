package debounce

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newClock() *fakeClock                   { return &fakeClock{t: epoch} }
func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }
func (c *fakeClock) offset() time.Duration   { return c.t.Sub(epoch) }

const ms = time.Millisecond

func every(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for t := from; t <= to; t += step {
		out = append(out, t)
	}
	return out
}

// simulate drives one view the way the owner does: it sleeps until the
// earliest of the next change, request, finish of the running refresh, or
// Next; then applies finishes, changes and requests at that instant, and
// starts everything Due. It returns the start offsets. A wakeup caused only by
// Next that finds Due empty is reported as an error, so a wrong Next fails
// the test either way (too early: spurious wakeup; too late: wrong starts).
func simulate(t *testing.T, s Settings, changes, requests []time.Duration, runFor time.Duration) []time.Duration {
	t.Helper()
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", s, nil)
	var starts []time.Duration
	finishAt := time.Duration(-1)
	for steps := 0; ; steps++ {
		if steps > 10000 {
			t.Fatal("simulation does not terminate")
		}
		next, byNext := time.Duration(-1), false
		consider := func(at time.Duration, fromNext bool) {
			if at < 0 {
				return
			}
			if next < 0 || at < next {
				next, byNext = at, fromNext
			} else if at == next && !fromNext {
				byNext = false
			}
		}
		if len(changes) > 0 {
			consider(changes[0], false)
		}
		if len(requests) > 0 {
			consider(requests[0], false)
		}
		consider(finishAt, false)
		if at, ok := d.Next(); ok {
			if off := at.Sub(epoch); off <= clk.offset() {
				t.Fatalf("at %v: Next = %v, not after now although all due views were started", clk.offset(), off)
			} else {
				consider(off, true)
			}
		}
		if next < 0 {
			return starts
		}
		clk.Advance(next - clk.offset())
		if finishAt == next {
			d.Finish("v")
			finishAt = -1
		}
		for len(changes) > 0 && changes[0] == next {
			if !d.Change("v") {
				t.Fatal("Change reported false for a known view")
			}
			changes = changes[1:]
		}
		for len(requests) > 0 && requests[0] == next {
			if !d.Request("v") {
				t.Fatal("Request reported false for a known view")
			}
			requests = requests[1:]
		}
		due := d.Due()
		if byNext && len(due) == 0 {
			t.Errorf("at %v: woken by Next but Due is empty", next)
		}
		for _, v := range due {
			d.Start(v)
			if d.Pending(v) || !d.Running(v) {
				t.Fatalf("after Start: pending=%v running=%v", d.Pending(v), d.Running(v))
			}
			starts = append(starts, next)
			finishAt = next + runFor
		}
	}
}

func TestDebouncer_Timing(t *testing.T) {
	tests := []struct {
		name     string
		s        Settings
		changes  []time.Duration
		requests []time.Duration
		runFor   time.Duration
		want     []time.Duration
	}{
		{
			name:    "burst of 60 changes is one refresh, quiet after the last",
			s:       Settings{Quiet: 100 * ms},
			changes: every(0, 590*ms, 10*ms),
			runFor:  50 * ms,
			want:    []time.Duration{690 * ms},
		},
		{
			name:    "quiet zero is due at once",
			s:       Settings{},
			changes: []time.Duration{0, 5 * ms},
			runFor:  1 * ms,
			want:    []time.Duration{0, 5 * ms},
		},
		{
			name:    "max wait caps an endless trickle",
			s:       Settings{Quiet: 100 * ms, MaxWait: time.Second},
			changes: every(0, 2900*ms, 50*ms),
			runFor:  10 * ms,
			want:    []time.Duration{1000 * ms, 2050 * ms, 3000 * ms},
		},
		{
			name:    "without max wait a trickle waits for quiet",
			s:       Settings{Quiet: 100 * ms},
			changes: every(0, 2900*ms, 50*ms),
			runFor:  10 * ms,
			want:    []time.Duration{3000 * ms},
		},
		{
			name:    "min interval delays the second start",
			s:       Settings{Quiet: 10 * ms, MinInterval: time.Second},
			changes: []time.Duration{0, 100 * ms},
			runFor:  20 * ms,
			want:    []time.Duration{10 * ms, 1010 * ms},
		},
		{
			name:    "min interval already elapsed does not delay",
			s:       Settings{Quiet: 10 * ms, MinInterval: 100 * ms},
			changes: []time.Duration{0, 500 * ms},
			runFor:  20 * ms,
			want:    []time.Duration{10 * ms, 510 * ms},
		},
		{
			name:    "many changes while running: exactly one more refresh, at finish",
			s:       Settings{Quiet: 10 * ms},
			changes: append([]time.Duration{0}, every(100*ms, 400*ms, 10*ms)...),
			runFor:  500 * ms,
			want:    []time.Duration{10 * ms, 510 * ms},
		},
		{
			name:    "change just before finish: one more refresh after quiet",
			s:       Settings{Quiet: 10 * ms},
			changes: []time.Duration{0, 100 * ms, 505 * ms},
			runFor:  500 * ms,
			want:    []time.Duration{10 * ms, 515 * ms},
		},
		{
			name:     "request skips the quiet period",
			s:        Settings{Quiet: time.Second},
			requests: []time.Duration{0},
			runFor:   10 * ms,
			want:     []time.Duration{0},
		},
		{
			name:     "request while pending starts at the request",
			s:        Settings{Quiet: time.Second},
			changes:  []time.Duration{0, 200 * ms},
			requests: []time.Duration{300 * ms},
			runFor:   10 * ms,
			want:     []time.Duration{300 * ms},
		},
		{
			name:     "request respects min interval",
			s:        Settings{MinInterval: time.Second},
			changes:  []time.Duration{0},
			requests: []time.Duration{200 * ms},
			runFor:   10 * ms,
			want:     []time.Duration{0, 1000 * ms},
		},
		{
			name:     "request respects a running refresh",
			s:        Settings{Quiet: time.Second},
			requests: []time.Duration{0, 100 * ms},
			runFor:   500 * ms,
			want:     []time.Duration{0, 500 * ms},
		},
		{
			name:     "request during run outranks later changes",
			s:        Settings{Quiet: time.Second},
			changes:  []time.Duration{100 * ms, 300 * ms},
			requests: []time.Duration{0, 200 * ms},
			runFor:   500 * ms,
			want:     []time.Duration{0, 500 * ms},
		},
		{
			name:     "changes during run without request wait for quiet",
			s:        Settings{Quiet: time.Second},
			changes:  []time.Duration{100 * ms, 300 * ms},
			requests: []time.Duration{0},
			runFor:   500 * ms,
			want:     []time.Duration{0, 1300 * ms},
		},
		{
			name:   "idle: no refresh",
			s:      Settings{Quiet: 10 * ms},
			runFor: 10 * ms,
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := simulate(t, tt.s, tt.changes, tt.requests, tt.runFor)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("starts = %v, want %v", got, tt.want)
			}
		})
	}
}

// check asserts Due and Next at the current fake time.
func check(t *testing.T, clk *fakeClock, d *Debouncer, wantDue []string, wantNext time.Duration, wantOK bool) {
	t.Helper()
	if got := d.Due(); !reflect.DeepEqual(got, wantDue) {
		t.Errorf("at %v: Due = %v, want %v", clk.offset(), got, wantDue)
	}
	at, ok := d.Next()
	if ok != wantOK || (ok && at.Sub(epoch) != wantNext) {
		t.Errorf("at %v: Next = %v,%v, want %v,%v", clk.offset(), at.Sub(epoch), ok, wantNext, wantOK)
	}
}

func TestDebouncer_Quiet(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", Settings{Quiet: 100 * ms}, nil)
	check(t, clk, d, nil, 0, false)
	for i := range 60 {
		if i > 0 {
			clk.Advance(10 * ms)
		}
		d.Change("v")
		check(t, clk, d, nil, clk.offset()+100*ms, true)
	}
	clk.Advance(99 * ms)
	check(t, clk, d, nil, 690*ms, true)
	clk.Advance(1 * ms)
	check(t, clk, d, []string{"v"}, 690*ms, true)
	d.Start("v")
	check(t, clk, d, nil, 0, false)
	if d.PendingCount() != 0 {
		t.Errorf("PendingCount = %d, want 0", d.PendingCount())
	}
	d.Finish("v")
	clk.Advance(time.Hour)
	check(t, clk, d, nil, 0, false)
}

func TestDebouncer_ChangeWhileRunning(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", Settings{Quiet: 10 * ms}, nil)
	d.Change("v")
	clk.Advance(10 * ms)
	d.Start("v")
	for range 50 {
		clk.Advance(ms)
		d.Change("v")
	}
	if !d.Pending("v") || !d.Running("v") || d.PendingCount() != 1 {
		t.Fatalf("pending=%v running=%v count=%d, want true true 1", d.Pending("v"), d.Running("v"), d.PendingCount())
	}
	clk.Advance(time.Second)
	check(t, clk, d, nil, 0, false) // running: not due, nothing to wait for
	d.Finish("v")
	check(t, clk, d, []string{"v"}, 70*ms, true)
	d.Start("v")
	d.Finish("v")
	check(t, clk, d, nil, 0, false)
	if d.Pending("v") || d.Running("v") {
		t.Errorf("after second refresh: pending=%v running=%v", d.Pending("v"), d.Running("v"))
	}
}

func TestDebouncer_Bases(t *testing.T) {
	q := Settings{Quiet: 100 * ms}
	type step struct {
		advance  time.Duration
		do       func(d *Debouncer)
		wantDue  []string
		wantNext time.Duration
		wantOK   bool
	}
	tests := []struct {
		name  string
		setup func(d *Debouncer)
		steps []step
	}{
		{
			name: "dependent waits for pending then running base",
			setup: func(d *Debouncer) {
				d.Set("b", q, nil)
				d.Set("d", q, []string{"b"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("d"); d.Change("b") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, wantDue: []string{"b"}, wantNext: 100 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Start("b") }}, // only blocked d pending
				{advance: time.Second}, // still blocked by running b
				{do: func(d *Debouncer) { d.Finish("b") }, wantDue: []string{"d"}, wantNext: 100 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Start("d"); d.Finish("d") }},
			},
		},
		{
			name: "cascade request after base finished",
			setup: func(d *Debouncer) {
				d.Set("b", q, nil)
				d.Set("d", Settings{Quiet: time.Hour}, []string{"b"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("b") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, do: func(d *Debouncer) { d.Start("b"); d.Request("d") }},
				{advance: 50 * ms, do: func(d *Debouncer) { d.Finish("b") }, wantDue: []string{"d"}, wantNext: 100 * ms, wantOK: true},
			},
		},
		{
			// The base's refresh would overlap the dependent's, which then
			// reads a base older than the one it is recorded against.
			name: "base waits while its dependent runs",
			setup: func(d *Debouncer) {
				d.Set("b", q, nil)
				d.Set("d", Settings{Quiet: 10 * ms}, []string{"b"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("d") }, wantNext: 10 * ms, wantOK: true},
				{advance: 10 * ms, do: func(d *Debouncer) { d.Start("d"); d.Change("b") }},
				{advance: 100 * ms},
				{do: func(d *Debouncer) { d.Finish("d") }, wantDue: []string{"b"}, wantNext: 110 * ms, wantOK: true},
			},
		},
		{
			name: "transitive bases and unknown bases",
			setup: func(d *Debouncer) {
				d.Set("a", q, nil)
				d.Set("b", q, []string{"a"})
				d.Set("c", q, []string{"a", "b"})
				d.Set("x", Settings{Quiet: 200 * ms}, []string{"ghost", "x"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("a"); d.Change("b"); d.Change("c"); d.Change("x") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, wantDue: []string{"a"}, wantNext: 100 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Start("a") }, wantNext: 200 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Finish("a") }, wantDue: []string{"b"}, wantNext: 100 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Start("b") }, wantNext: 200 * ms, wantOK: true},
				{advance: 100 * ms, wantDue: []string{"x"}, wantNext: 200 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Start("x"); d.Finish("b") }, wantDue: []string{"c"}, wantNext: 100 * ms, wantOK: true},
			},
		},
		{
			name: "base registered later blocks",
			setup: func(d *Debouncer) {
				d.Set("d", q, []string{"late"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("d"); d.Set("late", q, nil); d.Change("late") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, wantDue: []string{"late"}, wantNext: 100 * ms, wantOK: true},
			},
		},
		{
			name: "removing a running base unblocks",
			setup: func(d *Debouncer) {
				d.Set("b", q, nil)
				d.Set("d", q, []string{"b"})
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("b"); d.Change("d") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, do: func(d *Debouncer) { d.Start("b") }},
				{do: func(d *Debouncer) { d.Remove("b") }, wantDue: []string{"d"}, wantNext: 100 * ms, wantOK: true},
			},
		},
		{
			name: "updating bases applies at once",
			setup: func(d *Debouncer) {
				d.Set("b", q, nil)
				d.Set("d", q, nil)
			},
			steps: []step{
				{do: func(d *Debouncer) { d.Change("b"); d.Change("d") }, wantNext: 100 * ms, wantOK: true},
				{advance: 100 * ms, wantDue: []string{"b", "d"}, wantNext: 100 * ms, wantOK: true},
				{do: func(d *Debouncer) { d.Set("d", q, []string{"b"}) }, wantDue: []string{"b"}, wantNext: 100 * ms, wantOK: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			d := New(clk.Now)
			tt.setup(d)
			for i, s := range tt.steps {
				t.Run(fmt.Sprint("step", i), func(t *testing.T) {
					clk.Advance(s.advance)
					if s.do != nil {
						s.do(d)
					}
					check(t, clk, d, s.wantDue, s.wantNext, s.wantOK)
				})
			}
		})
	}
}

func TestDebouncer_ManyViews(t *testing.T) {
	const n = 1000
	clk := newClock()
	d := New(clk.Now)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("v%04d", i)
		d.Set(names[i], Settings{Quiet: time.Second}, nil)
	}
	// Change in a scrambled order, 1ms apart, so first-change order differs
	// from name order.
	order := make([]string, n)
	for i := range n {
		order[i] = names[(i*7919)%n]
	}
	for i, v := range order {
		if i > 0 {
			clk.Advance(ms)
		}
		d.Change(v)
	}
	// Push the oldest view's quiet period back; its first change stays oldest.
	d.Change(order[0])
	if got := d.PendingCount(); got != n {
		t.Fatalf("PendingCount = %d, want %d", got, n)
	}
	check(t, clk, d, nil, 1001*ms, true)

	clk.Advance(500 * ms) // now 1499ms: views changed at 1..499ms are due
	check(t, clk, d, order[1:500], 1001*ms, true)

	clk.Advance(500 * ms) // now 1999ms: all due, oldest first change first
	check(t, clk, d, order, 1001*ms, true)

	for _, v := range order[:10] {
		d.Start(v)
	}
	check(t, clk, d, order[10:], 1010*ms, true)
	if got := d.PendingCount(); got != n-10 {
		t.Errorf("PendingCount = %d, want %d", got, n-10)
	}
}

func TestDebouncer_DueTiesByName(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	for _, v := range []string{"c", "a", "b", "old"} {
		d.Set(v, Settings{}, nil)
	}
	d.Change("old")
	clk.Advance(ms)
	for _, v := range []string{"c", "b", "a"} {
		d.Change(v)
	}
	check(t, clk, d, []string{"old", "a", "b", "c"}, 0, true)
}

func TestDebouncer_SetKeepsState(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", Settings{Quiet: time.Second}, nil)
	d.Change("v")
	check(t, clk, d, nil, time.Second, true)
	d.Set("v", Settings{Quiet: 100 * ms}, nil)
	check(t, clk, d, nil, 100*ms, true)
	clk.Advance(100 * ms)
	d.Start("v")
	d.Set("v", Settings{Quiet: 100 * ms, MinInterval: time.Second}, nil)
	if !d.Running("v") {
		t.Fatal("Set cleared running state")
	}
	d.Change("v")
	d.Finish("v")
	check(t, clk, d, nil, 1100*ms, true)
}

func TestDebouncer_UnknownViews(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("gone", Settings{}, nil)
	d.Remove("gone")
	for _, v := range []string{"nope", "gone"} {
		if d.Change(v) {
			t.Errorf("Change(%q) = true", v)
		}
		if d.Request(v) {
			t.Errorf("Request(%q) = true", v)
		}
		d.Start(v)
		d.Finish(v)
		d.Remove(v)
		if d.Pending(v) || d.Running(v) {
			t.Errorf("%q: pending=%v running=%v", v, d.Pending(v), d.Running(v))
		}
	}
	if got := d.PendingCount(); got != 0 {
		t.Errorf("PendingCount = %d, want 0", got)
	}
	check(t, clk, d, nil, 0, false)
}

func TestDebouncer_RemoveWhileRunning(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", Settings{}, nil)
	d.Set("w", Settings{Quiet: 10 * ms}, nil)
	d.Change("v")
	d.Start("v")
	d.Change("v") // pending again while running
	d.Change("w")
	d.Remove("v")
	if d.Running("v") || d.Pending("v") || d.PendingCount() != 1 {
		t.Errorf("after Remove: running=%v pending=%v count=%d", d.Running("v"), d.Pending("v"), d.PendingCount())
	}
	d.Finish("v") // no-op
	if d.Running("v") || d.Pending("v") {
		t.Error("Finish resurrected the removed view")
	}
	clk.Advance(10 * ms)
	check(t, clk, d, []string{"w"}, 10*ms, true)
	if slices.Contains(d.Due(), "v") {
		t.Error("removed view is due")
	}
}

func TestDebouncer_RequestEarliestWins(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("v", Settings{Quiet: time.Second}, nil)
	d.Request("v")
	d.Start("v")
	clk.Advance(100 * ms)
	d.Request("v")
	clk.Advance(200 * ms)
	d.Change("v")
	d.Request("v")
	clk.Advance(200 * ms)
	check(t, clk, d, nil, 0, false)
	d.Finish("v")
	check(t, clk, d, []string{"v"}, 100*ms, true)
}

func TestDebouncer_Retry(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("v", Settings{Quiet: 2 * time.Second, MaxWait: 3 * time.Second}, nil)

	// A failed refresh retries after the backoff, not after the quiet period
	// or max wait.
	d.Retry("v", clock.t.Add(10*time.Second))
	clock.Advance(9 * time.Second)
	if due := d.Due(); len(due) != 0 {
		t.Fatalf("due %v before the backoff ended", due)
	}
	if at, ok := d.Next(); !ok || !at.Equal(epoch.Add(10*time.Second)) {
		t.Fatalf("Next() = %v, %v; want the end of the backoff", at, ok)
	}
	clock.Advance(time.Second)
	if due := d.Due(); len(due) != 1 {
		t.Fatalf("due %v at the end of the backoff, want [v]", due)
	}

	// A change during the backoff retries after the quiet period instead.
	d.Start("v")
	d.Finish("v")
	d.Retry("v", clock.t.Add(time.Minute))
	clock.Advance(time.Second)
	d.Change("v")
	clock.Advance(2 * time.Second)
	if due := d.Due(); len(due) != 1 {
		t.Fatalf("due %v 2s after a change during the backoff, want [v]", due)
	}

	// A request (cascade, manual) also beats the backoff.
	d.Start("v")
	d.Finish("v")
	d.Retry("v", clock.t.Add(time.Minute))
	d.Request("v")
	if due := d.Due(); len(due) != 1 {
		t.Fatalf("due %v after a request during the backoff, want [v]", due)
	}
}

func TestDebouncer_RetryingBaseDoesNotBlock(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("base", Settings{}, nil)
	d.Set("dep", Settings{}, []string{"base"})
	d.Retry("base", clock.t.Add(time.Minute)) // the base keeps failing
	d.Change("dep")
	if due := d.Due(); len(due) != 1 || due[0] != "dep" {
		t.Fatalf("due %v: a base waiting out its backoff must not block its dependent", due)
	}
}

// While the stream catches up on a backlog, changes do not make a view due
// (with no quiet period, it would refresh after every transaction of the
// backlog); its max wait still bounds the delay, requests go through, and
// catching up makes it due at once.
func TestDebouncer_Behind(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("bounded", Settings{MaxWait: time.Second}, nil)
	d.Set("unbounded", Settings{}, nil)
	d.Set("requested", Settings{}, nil)

	d.SetBehind(true)
	d.Change("bounded")
	d.Change("unbounded")
	d.Request("requested")
	check(t, clk, d, []string{"requested"}, 0, true)
	d.Start("requested")
	d.Finish("requested")
	clk.Advance(500 * ms)
	d.Change("bounded")
	d.Change("unbounded")
	check(t, clk, d, nil, time.Second, true)
	clk.Advance(500 * ms)
	check(t, clk, d, []string{"bounded"}, time.Second, true)
	d.Start("bounded")
	d.Finish("bounded")
	check(t, clk, d, nil, 0, false) // only catching up makes "unbounded" due

	d.SetBehind(false)
	check(t, clk, d, []string{"unbounded"}, 500*ms, true) // its last change plus no quiet period
}

// A dependent dropped while it runs no longer holds its base back.
func TestDebouncer_RemovedRunningDependentReleasesItsBase(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("b", Settings{}, nil)
	d.Set("d", Settings{}, []string{"b"})
	d.Request("d")
	d.Start("d")
	d.Request("b")
	check(t, clk, d, nil, 0, false)
	d.Remove("d")
	check(t, clk, d, []string{"b"}, 0, true)
	d.Finish("d") // its refresh ends after all: nothing to undo twice
	check(t, clk, d, []string{"b"}, 0, true)
}

// Once its retry is due, a failing base goes first: dependents that keep
// changing and running must not put it off forever.
func TestDebouncer_DueRetryBlocksDependents(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("base", Settings{}, nil)
	d.Set("dep", Settings{}, []string{"base"})
	d.Retry("base", clock.t.Add(time.Second))
	d.Change("dep")
	d.Start("dep")
	clock.Advance(2 * time.Second) // the retry is due while dep runs
	d.Change("dep")
	d.Finish("dep")
	if due := d.Due(); !reflect.DeepEqual(due, []string{"base"}) {
		t.Fatalf("due %v, want [base]: its retry is due", due)
	}
}

// Due lists what may start as things stand; starting one can rule out
// another (a base and its dependent, both due).
func TestDebouncer_Startable(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("base", Settings{}, nil)
	d.Set("dep", Settings{}, []string{"base"})
	d.Retry("base", clock.t.Add(time.Hour)) // failing, retried later
	d.Request("dep")
	due := d.Due()
	if !reflect.DeepEqual(due, []string{"dep"}) {
		t.Fatalf("due %v, want [dep]", due)
	}
	d.Start("dep")
	d.Request("base") // a cascade or request for the base while dep runs
	if d.Startable("base") {
		t.Fatal("base startable while a view built on it runs")
	}
	d.Finish("dep")
	if !d.Startable("base") {
		t.Fatal("base not startable once its dependent finished")
	}
	d.Start("base")
	d.Request("dep")
	if d.Startable("dep") {
		t.Fatal("dep startable while its base runs")
	}
}

// A dependent whose work is older than its base's pending work starts
// without waiting for the base: the base's newer changes cascade later.
func TestDebouncer_OlderDependentGoesFirst(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("b", Settings{Quiet: 100 * ms}, nil)
	d.Set("d", Settings{Quiet: time.Hour}, []string{"b"})
	d.Request("d") // a cascade of b's previous refresh
	clk.Advance(10 * ms)
	d.Change("b")
	check(t, clk, d, []string{"d"}, 0, true)
	d.Start("d")
	check(t, clk, d, nil, 0, false) // b waits for d, then its own quiet period
	d.Finish("d")
	check(t, clk, d, nil, 110*ms, true)
}

// A pending base with older work holds its dependent back only until the
// dependent's own max wait runs out; a running base always does.
func TestDebouncer_MaxWaitEndsABaseHold(t *testing.T) {
	clk := newClock()
	d := New(clk.Now)
	d.Set("b", Settings{Quiet: time.Hour}, nil)
	d.Set("d", Settings{MaxWait: 2 * time.Second}, []string{"b"})
	d.Change("b")
	d.Request("d")
	check(t, clk, d, nil, 2*time.Second, true)
	clk.Advance(2 * time.Second)
	check(t, clk, d, []string{"d"}, 0, true) // requested at 0

	d.Start("b") // the base starts after all: the dependent waits for it
	check(t, clk, d, nil, 0, false)
	d.Finish("b")
	check(t, clk, d, []string{"d"}, 0, true)
}

// Ten simulated minutes of writes arriving during every refresh of a base
// whose refresh takes 300 ms: the base is pending again whenever it
// finishes. Its dependent must still refresh within its max wait of each
// cascade, so that its hold never pins the slot for long.
func TestDebouncer_SustainedWritesDoNotStarveADependent(t *testing.T) {
	const (
		writeEvery  = 50 * ms
		baseTakes   = 300 * ms
		depTakes    = 100 * ms
		simulated   = 10 * time.Minute
		maxWait     = 2 * time.Second
		allowedWait = maxWait + baseTakes // a running base still blocks
	)
	clk := newClock()
	d := New(clk.Now)
	s := Settings{Quiet: 200 * ms, MaxWait: maxWait}
	d.Set("base", s, nil)
	d.Set("dep", s, []string{"base"})
	finishAt := map[string]time.Duration{}
	var baseStarts, depStarts int
	depPendingSince := time.Duration(-1)
	worst := time.Duration(0)
	for now := time.Duration(0); now <= simulated; now += 10 * ms {
		clk.Advance(now - clk.offset())
		for _, name := range []string{"base", "dep"} {
			if at, ok := finishAt[name]; ok && at <= now {
				d.Finish(name)
				delete(finishAt, name)
				if name == "base" {
					d.Request("dep") // the cascade
					if depPendingSince < 0 {
						depPendingSince = now
					}
				}
			}
		}
		if now%writeEvery == 0 {
			d.Change("base")
		}
		for _, name := range d.Due() {
			if !d.Startable(name) {
				continue
			}
			d.Start(name)
			if name == "base" {
				baseStarts++
				finishAt[name] = now + baseTakes
			} else {
				depStarts++
				finishAt[name] = now + depTakes
				worst = max(worst, now-depPendingSince)
				depPendingSince = -1
			}
		}
		if depPendingSince >= 0 && now-depPendingSince > allowedWait {
			t.Fatalf("at %v: the dependent has waited %v since its cascade (base refreshed %d times, dependent %d)",
				now, now-depPendingSince, baseStarts, depStarts)
		}
	}
	// Each dependent refresh may cover two cascades, no more.
	if min := int(simulated / (2 * allowedWait)); depStarts < min {
		t.Fatalf("dependent refreshed %d times in %v, want at least %d (base: %d)", depStarts, simulated, min, baseStarts)
	}
	t.Logf("base %d refreshes, dependent %d, longest dependent wait %v", baseStarts, depStarts, worst)
}

// A start that ran nothing (put off: what it was to cover was not visible
// yet) does not count for the minimum interval: its retry comes at its
// backoff, and the minimum interval counts from the start that ran.
func TestDebouncer_PutOffStartDoesNotCountForMinInterval(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("v", Settings{MinInterval: 20 * time.Second}, nil)
	d.Change("v")
	check(t, clock, d, []string{"v"}, 0, true)
	d.Start("v")
	clock.Advance(ms)
	d.PutOff("v")
	if d.Running("v") {
		t.Fatal("running after PutOff")
	}
	d.Retry("v", clock.t.Add(10*ms))
	check(t, clock, d, nil, 11*ms, true)
	clock.Advance(10 * ms)
	check(t, clock, d, []string{"v"}, 11*ms, true)
	d.Start("v")
	d.Finish("v")
	d.Change("v")
	check(t, clock, d, nil, 11*ms+20*time.Second, true)
}

// MinIntervalHold says how long the minimum interval held a view back
// past the time it was otherwise due, so that a late refresh can name it.
func TestDebouncer_MinIntervalHold(t *testing.T) {
	clock := newClock()
	d := New(clock.Now)
	d.Set("v", Settings{Quiet: time.Second, MinInterval: 10 * time.Second}, nil)
	d.Change("v")
	clock.Advance(time.Second)
	if h := d.MinIntervalHold("v"); h != 0 {
		t.Fatalf("first start: held %s, want 0 (no start before it)", h)
	}
	d.Start("v")
	d.Finish("v")
	clock.Advance(2 * time.Second)
	d.Change("v") // 3s in: quiet until 4s, min_interval until 11s
	clock.Advance(5 * time.Second)
	if h := d.MinIntervalHold("v"); h != 4*time.Second {
		t.Errorf("8s in: held %s, want 4s (due at 4s)", h)
	}
	clock.Advance(10 * time.Second)
	check(t, clock, d, []string{"v"}, 11*time.Second, true)
	if h := d.MinIntervalHold("v"); h != 7*time.Second {
		t.Errorf("past min_interval: held %s, want 7s (due at 4s, allowed at 11s)", h)
	}
	d.Start("v")
	d.Finish("v")
	clock.Advance(20 * time.Second)
	d.Change("v")
	clock.Advance(time.Second)
	if h := d.MinIntervalHold("v"); h != 0 {
		t.Errorf("a change long after the last start: held %s, want 0", h)
	}
}
