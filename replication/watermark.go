package replication

import "github.com/jackc/pglogrepl"

// Hold is a claim on the slot's position, returned by Watermark.Hold.
type Hold uint64

// Watermark computes the position the slot may confirm. Work that is not
// done yet holds the commit LSN of the oldest transaction it covers; the slot
// may confirm up to the oldest held commit LSN (the server resends a
// transaction whose commit LSN is not before the confirmed position), or up
// to the newest position seen when nothing is held.
//
// Not safe for concurrent use: the daemon's scheduler owns it.
type Watermark struct {
	holds  map[Hold]pglogrepl.LSN
	nextID Hold
	seen   pglogrepl.LSN
	// oldest caches the minimum of holds; valid when holds is not empty.
	oldest pglogrepl.LSN
}

// NewWatermark starts at the slot's position: nothing before it will be seen.
func NewWatermark(start pglogrepl.LSN) *Watermark {
	return &Watermark{holds: make(map[Hold]pglogrepl.LSN), seen: start}
}

// Seen records that everything up to lsn has been received: a commit's end
// LSN, or a keepalive's WAL end while no transaction is in flight.
func (w *Watermark) Seen(lsn pglogrepl.LSN) {
	if lsn > w.seen {
		w.seen = lsn
	}
}

// Hold keeps the position from passing commitLSN until the hold is released.
func (w *Watermark) Hold(commitLSN pglogrepl.LSN) Hold {
	w.nextID++
	if len(w.holds) == 0 || commitLSN < w.oldest {
		w.oldest = commitLSN
	}
	w.holds[w.nextID] = commitLSN
	return w.nextID
}

// Release drops a hold. Releasing an unknown or zero hold does nothing.
func (w *Watermark) Release(h Hold) {
	lsn, ok := w.holds[h]
	if !ok {
		return
	}
	delete(w.holds, h)
	if lsn != w.oldest || len(w.holds) == 0 {
		return
	}
	first := true
	for _, l := range w.holds {
		if first || l < w.oldest {
			w.oldest, first = l, false
		}
	}
}

// Confirmable is the position the slot may confirm now.
func (w *Watermark) Confirmable() pglogrepl.LSN {
	if len(w.holds) > 0 && w.oldest < w.seen {
		return w.oldest
	}
	return w.seen
}

// Held reports how many holds are outstanding.
func (w *Watermark) Held() int { return len(w.holds) }

// SeenLSN is the newest position seen.
func (w *Watermark) SeenLSN() pglogrepl.LSN { return w.seen }
