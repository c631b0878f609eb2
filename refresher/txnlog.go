package refresher

import "slices"

// Seq numbers the transactions of a TxnLog in the order they were decoded
// (commit order), from 1; 0 is no transaction.
type Seq uint64

// txnChunkLen is how many transactions a chunk holds: 64 KiB of them.
const txnChunkLen = 4096

type txnChunk [txnChunkLen]Txn

// TxnLog is one log of the decoded transactions that pending refreshes are
// for, shared by every view: a view's pending work keeps only the range of
// sequence numbers it covers, so memory grows with transactions, not with
// views times transactions.
//
// A TxnSpan of the log may be read by another goroutine while the log's
// owner appends and drops: an entry is written once, before any span covers
// it, and never again, and a chunk or the list of chunks a span holds is
// never written once the span has it (dropping copies the list of chunks
// that are kept instead of clearing the old one).
type TxnLog struct {
	chunks []*txnChunk
	base   Seq // the sequence number of chunks[0][0]
	start  Seq // the oldest transaction kept
	next   Seq // the sequence number the next Append gives
}

// NewTxnLog returns an empty log.
func NewTxnLog() *TxnLog {
	return &TxnLog{base: 1, start: 1, next: 1}
}

// Append logs t and returns its sequence number.
func (l *TxnLog) Append(t Txn) Seq {
	i := l.next - l.base
	if i == Seq(len(l.chunks))*txnChunkLen {
		l.chunks = append(l.chunks, new(txnChunk))
	}
	l.chunks[i/txnChunkLen][i%txnChunkLen] = t
	l.next++
	return l.next - 1
}

// Last returns the newest transaction logged and its sequence number, ok
// false when the log holds none.
func (l *TxnLog) Last() (seq Seq, t Txn, ok bool) {
	if l.next == l.start {
		return 0, Txn{}, false
	}
	i := l.next - 1 - l.base
	return l.next - 1, l.chunks[i/txnChunkLen][i%txnChunkLen], true
}

// Start is the sequence number of the oldest transaction kept: the log
// dropped everything before it.
func (l *TxnLog) Start() Seq { return l.start }

// Next is the sequence number the next Append gives.
func (l *TxnLog) Next() Seq { return l.next }

// Len is how many transactions the log keeps.
func (l *TxnLog) Len() int { return int(l.next - l.start) }

// DropBefore forgets the transactions before seq (all of them when seq is
// past the newest). Chunks left with none are freed once no span holds them.
func (l *TxnLog) DropBefore(seq Seq) {
	seq = min(seq, l.next)
	if seq <= l.start {
		return
	}
	l.start = seq
	if k := (seq - l.base) / txnChunkLen; k > 0 {
		// A fresh list: spans in flight may hold the old one.
		l.chunks = slices.Clone(l.chunks[k:])
		l.base += k * txnChunkLen
	}
}

// Span returns the transactions from..to (both included) for reading
// elsewhere, without copying them: from at or past Start, to before Next.
// A from past to makes an empty span.
func (l *TxnLog) Span(from, to Seq) TxnSpan {
	if from == 0 || from > to || from < l.start || to >= l.next {
		return TxnSpan{}
	}
	first, last := (from-l.base)/txnChunkLen, (to-l.base)/txnChunkLen
	return TxnSpan{chunks: l.chunks[first : last+1 : last+1], base: l.base + first*txnChunkLen, From: from, To: to}
}

// TxnSpan is a read-only run of a TxnLog's transactions, From..To (both
// included); the zero TxnSpan is empty.
type TxnSpan struct {
	chunks   []*txnChunk
	base     Seq
	From, To Seq
}

// Empty reports whether the span holds no transaction.
func (sp TxnSpan) Empty() bool { return sp.From == 0 || sp.From > sp.To }

// Len is how many transactions the span holds.
func (sp TxnSpan) Len() int {
	if sp.Empty() {
		return 0
	}
	return int(sp.To - sp.From + 1)
}

// At returns the transaction seq, which must be in the span.
func (sp TxnSpan) At(seq Seq) Txn {
	i := seq - sp.base
	return sp.chunks[i/txnChunkLen][i%txnChunkLen]
}

// Find returns the first transaction from seq on that match accepts, and
// its sequence number; ok is false when none does.
func (sp TxnSpan) Find(seq Seq, match func(Txn) bool) (found Seq, t Txn, ok bool) {
	if sp.Empty() {
		return 0, Txn{}, false
	}
	seq = max(seq, sp.From)
	for seq <= sp.To {
		i := seq - sp.base
		c, off := sp.chunks[i/txnChunkLen], i%txnChunkLen
		end := min(txnChunkLen, off+(sp.To-seq)+1)
		for j, t := range c[off:end] {
			if match(t) {
				return seq + Seq(j), t, true
			}
		}
		seq += end - off
	}
	return 0, Txn{}, false
}
