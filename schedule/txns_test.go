package schedule

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
)

// newSiblingsScheduler manages n views reading app.src, none built on
// another, with one worker and no quiet period.
func newSiblingsScheduler(t testing.TB, n int) *Scheduler {
	t.Helper()
	src := &catalog.Table{OID: srcOID, Schema: "app", Relname: "src", Name: "app.src", Kind: catalog.KindTable, Persistence: 'p', ReplicaIdentity: true}
	views := make([]*catalog.View, n)
	for i := range views {
		name := fmt.Sprintf("v%03d", i)
		views[i] = &catalog.View{OID: uint32(100 + i), Schema: "app", Relname: name, Name: "app." + name, Sources: []*catalog.Table{src}}
	}
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait, cfg.Workers = 0, 0, 1
	m := metrics.New(func() bool { return true }, func() bool { return false })
	return New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Metrics: m, Catalog: catalog.New(views...), Start: 0x100, Confirm: func(pglogrepl.LSN) {}})
}

// seenAllForTest is the outcome of req's refresh when its snapshot saw all
// of its transactions.
func seenAllForTest(req refresher.Request) refresher.Outcome {
	out := refresher.Outcome{LSN: req.LSN, Recorded: true}
	if !req.Txns.Empty() {
		out.VisibleBefore = req.Txns.To + 1
	}
	return out
}

// Once one view's refresh found its transactions visible, the other views
// over the same table need not wait for them: their refreshes run (they
// are not deferrable, there is something for them to cover), check
// nothing, and the log is empty once they are done.
func TestScheduler_TransactionsASnapshotSawAreDropped(t *testing.T) {
	s := newSiblingsScheduler(t, 2)
	s.commitForTest(7, 0x200, 0x210)
	s.commitForTest(8, 0x300, 0x310)
	if s.txns.Len() != 2 {
		t.Fatalf("the log holds %d transactions, want 2 (one entry per transaction, not per view)", s.txns.Len())
	}
	req := s.nextForTest(t)
	if txns := txnsForTest(req); len(txns) != 2 || !req.Deferrable {
		t.Fatalf("first refresh %+v", req)
	}
	s.finish(result{view: req.View.Name, outcome: seenAllForTest(req)})
	req = s.nextForTest(t)
	if !req.Txns.Empty() || req.Deferrable {
		t.Fatalf("second view's refresh %+v: want no transactions to check, not deferrable", req)
	}
	s.finish(result{view: req.View.Name, outcome: seenAllForTest(req)})
	if s.txns.Len() != 0 {
		t.Fatalf("the log keeps %d transactions with nothing pending", s.txns.Len())
	}
	expectConfirmable(t, s, 0x310)
}

// A refresh that missed a commit tells the log to keep it and what follows:
// the other view's refresh checks it, and is for it.
func TestScheduler_TransactionsASnapshotMissedAreKept(t *testing.T) {
	s := newSiblingsScheduler(t, 2)
	s.commitForTest(7, 0x200, 0x210)
	s.commitForTest(8, 0x300, 0x310)
	req := s.nextForTest(t)
	first := req.View.Name
	s.finish(result{view: first, outcome: unseenForTest(t, req, 8)})
	if s.txns.Start() != 2 || s.txns.Len() != 1 {
		t.Fatalf("the log keeps %d from %d, want xid 8's entry only", s.txns.Len(), s.txns.Start())
	}
	req = s.nextForTest(t)
	if txns := txnsForTest(req); req.View.Name == first || len(txns) != 1 || txns[0].Xid != 8 || req.Deferrable {
		t.Fatalf("second view's refresh %+v, want it for xid 8 only, not deferrable (xid 7 is visible)", req)
	}
}

// Pending work for many views over one table keeps the transactions once:
// memory grows with the transactions, not with views times transactions.
func TestScheduler_PendingTransactionsAreKeptOnce(t *testing.T) {
	const views, txns = 200, 20_000
	s := newSiblingsScheduler(t, views)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range txns {
		lsn := pglogrepl.LSN(0x1000 + 0x100*i)
		s.commitForTest(uint32(1000+i), lsn, lsn+0x10)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perTxn := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / txns
	// A transaction is 16 bytes in the log; a list per view made it 3,200.
	if perTxn > 64 {
		t.Fatalf("%.0f bytes of heap per pending transaction with %d views pending", perTxn, views)
	}
	if len(s.pending) != views {
		t.Fatalf("%d views pending, want %d", len(s.pending), views)
	}
	runtime.KeepAlive(s)
}
