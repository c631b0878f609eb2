package refresher

import (
	"sync"
	"testing"

	"github.com/jackc/pglogrepl"
)

func appendN(l *TxnLog, n int) {
	for range n {
		seq := l.Next()
		l.Append(Txn{Xid: uint32(seq), CommitLSN: pglogrepl.LSN(seq * 16)})
	}
}

func TestTxnLog_SpansAcrossChunks(t *testing.T) {
	l := NewTxnLog()
	appendN(l, 3*txnChunkLen+5)
	sp := l.Span(txnChunkLen-2, 2*txnChunkLen+3)
	if sp.Len() != txnChunkLen+6 {
		t.Fatalf("span of %d, want %d", sp.Len(), txnChunkLen+6)
	}
	for seq := sp.From; seq <= sp.To; seq++ {
		if got := sp.At(seq); got.Xid != uint32(seq) || got.CommitLSN != pglogrepl.LSN(seq*16) {
			t.Fatalf("At(%d) = %+v", seq, got)
		}
	}
	seq, txn, ok := sp.Find(0, func(t Txn) bool { return t.Xid >= 2*txnChunkLen+1 })
	if !ok || seq != 2*txnChunkLen+1 || txn.Xid != uint32(seq) {
		t.Fatalf("Find across a chunk boundary: %d %+v %v", seq, txn, ok)
	}
	if _, _, ok := sp.Find(sp.From, func(t Txn) bool { return t.Xid == uint32(sp.To)+1 }); ok {
		t.Fatal("Find went past the span's end")
	}
	if _, _, ok := sp.Find(sp.From, func(t Txn) bool { return t.Xid == uint32(sp.From)-1 }); ok {
		t.Fatal("Find went before the span's start")
	}
	if last, txn, ok := l.Last(); !ok || last != 3*txnChunkLen+5 || txn.Xid != uint32(last) {
		t.Fatalf("Last() = %d %+v %v", last, txn, ok)
	}
}

func TestTxnLog_DropBeforeFreesWholeChunks(t *testing.T) {
	l := NewTxnLog()
	appendN(l, 3*txnChunkLen)
	kept := l.Span(1, 10)
	l.DropBefore(2*txnChunkLen + 7)
	if l.Start() != 2*txnChunkLen+7 || l.Len() != txnChunkLen-6 || len(l.chunks) != 1 {
		t.Fatalf("start %d, %d kept in %d chunks; want the last chunk only", l.Start(), l.Len(), len(l.chunks))
	}
	if got := kept.At(3); got.Xid != 3 {
		t.Fatalf("a span taken before the drop reads %+v", got)
	}
	if sp := l.Span(5, 2*txnChunkLen+8); !sp.Empty() {
		t.Fatal("a span of dropped transactions")
	}
	l.DropBefore(1) // never back
	if l.Start() != 2*txnChunkLen+7 {
		t.Fatalf("start moved back to %d", l.Start())
	}
	l.DropBefore(l.Next() + 100)
	if l.Len() != 0 || l.Start() != l.Next() {
		t.Fatalf("dropping past the newest left %d", l.Len())
	}
	if _, _, ok := l.Last(); ok {
		t.Fatal("an empty log has a last transaction")
	}
	appendN(l, 2)
	if sp := l.Span(l.Start(), l.Next()-1); sp.Len() != 2 || sp.At(sp.To).Xid != uint32(sp.To) {
		t.Fatalf("appending after dropping everything: %+v", sp)
	}
}

// A refresh reads its span on a worker while the scheduler goes on
// appending and dropping: go test -race checks they share nothing written.
func TestTxnLog_SpanReadWhileTheLogMoves(t *testing.T) {
	l := NewTxnLog()
	appendN(l, txnChunkLen/2)
	sp := l.Span(1, l.Next()-1)
	var wg sync.WaitGroup
	wg.Add(1)
	bad := 0
	go func() {
		defer wg.Done()
		for range 20 {
			for seq := sp.From; seq <= sp.To; seq++ {
				if sp.At(seq).Xid != uint32(seq) {
					bad++
				}
			}
		}
	}()
	for range 10 {
		appendN(l, txnChunkLen)
		l.DropBefore(l.Next() - txnChunkLen/3)
	}
	wg.Wait()
	if bad != 0 {
		t.Fatalf("%d transactions of the span changed while it was read", bad)
	}
}
