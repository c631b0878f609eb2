package schedule

import (
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// The transactions pending refreshes are for live once, in the scheduler's
// log (refresher.TxnLog); a view's work keeps the range of the log it
// covers. Pending work for 200 views over one table used to keep 200 lists
// of the same transactions.

// txnRange is first..last (both included) of the scheduler's log; the zero
// txnRange is empty.
//
// A range covers every transaction between its ends, those of other views
// included: merging two ranges makes one that covers both and what lies
// between. That superset is safe: a refresh is for its view's
// transactions and then some, so it can only wait for a commit it did not
// need to (or run once more), never count one as covered that its snapshot
// did not see.
type txnRange struct {
	first, last refresher.Seq
}

func (r txnRange) empty() bool { return r.first == 0 }

// with returns r widened to cover first..last.
func (r txnRange) with(first, last refresher.Seq) txnRange {
	if first == 0 {
		return r
	}
	if r.empty() {
		return txnRange{first, last}
	}
	return txnRange{min(r.first, first), max(r.last, last)}
}

// logTxn returns tx's number in the log, logging it the first time (a
// transaction reaches change once per view and per relation it changed).
func (s *Scheduler) logTxn(tx *replication.Transaction) refresher.Seq {
	if seq, last, ok := s.txns.Last(); ok && last.Xid == tx.Xid && last.CommitLSN == tx.CommitLSN {
		return seq
	}
	return s.txns.Append(refresher.Txn{Xid: tx.Xid, CommitLSN: tx.CommitLSN})
}

// settleTxns drops from w's range what the log dropped before its start
// for being visible: a snapshot saw it, so (visibility being monotonic:
// a commit one snapshot sees, every later one sees) the next refresh's
// snapshot sees it too, and that refresh covers something for sure, so it
// must run. The log drops a transaction before every work's range starts
// unless a snapshot saw it (pruneTxns), so what a range has before the
// start is visible.
func (s *Scheduler) settleTxns(w *work) {
	start := s.txns.Start()
	if w.txns.empty() || w.txns.first >= start {
		return
	}
	w.unconditional = true
	if w.txns.last < start {
		w.txns = txnRange{}
		return
	}
	w.txns.first = start
}

// txnSpan returns what a refresh of w checks against its snapshot: w's
// transactions, and before them those no snapshot was found to see yet,
// so that its snapshot can show they are visible and the log drop them.
func (s *Scheduler) txnSpan(w *work) refresher.TxnSpan {
	if w.txns.empty() {
		return refresher.TxnSpan{}
	}
	return s.txns.Span(s.txns.Start(), w.txns.last)
}

// pruneTxns drops from the log what no work covers any more, and what a
// refresh's snapshot found visible (every later snapshot sees it too). It
// costs one look at each pending and running work.
func (s *Scheduler) pruneTxns(visibleBefore refresher.Seq) {
	s.txns.DropBefore(visibleBefore)
	keep := s.txns.Next()
	for _, works := range []map[string]*work{s.pending, s.running} {
		for _, w := range works {
			if !w.txns.empty() {
				keep = min(keep, w.txns.first)
			}
		}
	}
	s.txns.DropBefore(keep)
}
