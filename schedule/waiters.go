package schedule

import (
	"container/heap"
	"context"
	"sync/atomic"

	"github.com/jackc/pglogrepl"
)

// waiters are the queries waiting for a view to be fresh through a
// position, each view's in a min-heap by position: a scheduler loop
// iteration looks once at each view with waiters and at no waiter its view
// cannot answer yet. Checking every waiter in every iteration (and each
// wait request is one) stalled the stream with tens of thousands waiting.
// Only the scheduler's goroutine uses them, but for gaveUp.
type waiters struct {
	byView map[string]*waitHeap
	count  int
	// gaveUp counts the waiters held whose context has ended (a
	// context.AfterFunc adds each): they are dropped in a sweep once they
	// are half of the waiters held, so that clients giving up cost no scan
	// per iteration and the waiters held stay within twice those waiting.
	gaveUp atomic.Int64
}

type waiter struct {
	q viewQuery
	// stop unregisters the AfterFunc counting the waiter in gaveUp.
	stop func() bool
}

// add keeps q until its view is fresh through q.lsn, unless its client
// has given up already.
func (ws *waiters) add(q viewQuery) {
	if q.ctx.Err() != nil {
		return
	}
	if ws.byView == nil {
		ws.byView = map[string]*waitHeap{}
	}
	h := ws.byView[q.view]
	if h == nil {
		h = &waitHeap{}
		ws.byView[q.view] = h
	}
	w := &waiter{q: q}
	w.stop = context.AfterFunc(q.ctx, func() { ws.gaveUp.Add(1) })
	heap.Push(h, w)
	ws.count++
}

// earliest is the least position a waiter of the view waits for.
func (ws *waiters) earliest(view string) pglogrepl.LSN { return (*ws.byView[view])[0].q.lsn }

// answerThrough answers the view's waiters for positions up to through
// with answer, and forgets them.
func (ws *waiters) answerThrough(view string, through pglogrepl.LSN, answer func() viewAnswer) {
	h := ws.byView[view]
	for h.Len() > 0 && (*h)[0].q.lsn <= through {
		w := heap.Pop(h).(*waiter)
		w.q.reply <- answer()
		ws.forget(w)
	}
	if h.Len() == 0 {
		delete(ws.byView, view)
	}
}

// answerView answers every waiter of the view with a, and forgets them.
func (ws *waiters) answerView(view string, a viewAnswer) {
	for _, w := range *ws.byView[view] {
		w.q.reply <- a
		ws.forget(w)
	}
	delete(ws.byView, view)
}

// answerAll answers every waiter with a, and forgets them.
func (ws *waiters) answerAll(a viewAnswer) {
	for view := range ws.byView {
		ws.answerView(view, a)
	}
}

// forget ends a waiter's wait, answered or not.
func (ws *waiters) forget(w *waiter) {
	ws.count--
	if !w.stop() {
		ws.gaveUp.Add(-1) // its AfterFunc has run, or is about to: it counts it
	}
}

// sweepGivenUp drops the waiters whose context has ended once they are
// half of those held; a sweep looks at every waiter, so it comes at most
// once per as many clients giving up as are still waiting.
func (ws *waiters) sweepGivenUp() {
	if 2*ws.gaveUp.Load() <= int64(ws.count) {
		return
	}
	for view, h := range ws.byView {
		kept := (*h)[:0]
		for _, w := range *h {
			if w.q.ctx.Err() != nil {
				ws.forget(w)
				continue
			}
			kept = append(kept, w)
		}
		clear((*h)[len(kept):])
		*h = kept
		if len(kept) == 0 {
			delete(ws.byView, view)
			continue
		}
		heap.Init(h)
	}
}

// waitHeap orders one view's waiters by position (container/heap).
type waitHeap []*waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].q.lsn < h[j].q.lsn }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(*waiter)) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}
