package replication

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// pingsAt feeds d reply-requested keepalives at end, sent at the given
// offsets from a base time, and returns the index of the first one that
// detects a shutdown, or -1.
func pingsAt(d *stopDetector, end pglogrepl.LSN, offsets ...time.Duration) int {
	base := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for i, off := range offsets {
		if d.ping(end, base.Add(off)) {
			return i
		}
	}
	return -1
}

// Ordinary pings are at least half of wal_sender_timeout apart, however
// short the timeout: they never look like a shutdown. A shutting-down
// walsender's pings, a round trip apart, do.
func TestStopDetector(t *testing.T) {
	ms := time.Millisecond
	for _, timeout := range []time.Duration{60 * time.Second, 600 * ms, 100 * ms, 3 * ms} {
		half := time.Duration(timeout.Milliseconds()/2) * ms
		var ordinary []time.Duration
		for i := range 20 {
			ordinary = append(ordinary, time.Duration(i)*half)
		}
		if got := pingsAt(&stopDetector{senderTimeout: timeout}, 100, ordinary...); got >= 0 {
			t.Errorf("wal_sender_timeout %v: ordinary pings %v apart taken for a shutdown at ping %d", timeout, half, got)
		}
	}

	d := &stopDetector{senderTimeout: 600 * ms}
	if got := pingsAt(d, 100, 0, 300*ms, 301*ms, 302*ms); got != 3 {
		t.Errorf("an ordinary ping, then a shutdown's pings 1 ms apart: detected at ping %d, want 3", got)
	}

	d = &stopDetector{senderTimeout: 600 * ms}
	pingsAt(d, 100, 0, ms)
	d.data()
	if got := pingsAt(d, 100, 2*ms); got >= 0 {
		t.Errorf("data between pings: detected at ping %d", got)
	}
	if got := pingsAt(&stopDetector{senderTimeout: 600 * ms}, 100, 0, ms, 2*ms); got != 2 {
		t.Errorf("pings 1 ms apart: detected at ping %d, want 2", got)
	}
	if got := pingsAt(&stopDetector{senderTimeout: 600 * ms}, 100, 0, ms); got >= 0 {
		t.Errorf("two rapid pings: detected at ping %d, want %d in a row first", got, stoppingPings)
	}

	// wal_sender_timeout 0: no ordinary pings at all.
	if got := pingsAt(&stopDetector{}, 100, 0, time.Minute, 2*time.Minute); got != 2 {
		t.Errorf("wal_sender_timeout 0: detected at ping %d, want 2", got)
	}
}
