package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// The scheduler driven by hand, without a server: transactions in, the
// refreshes it hands out, fake outcomes back, and the position the slot may
// confirm after each step. The debouncer's clock is the scheduler's own
// s.now, which the tests move.

const srcOID = 16400

// newTestScheduler manages app.base (reading app.src) and app.dep (built on
// app.base), with no quiet period, and the options adjust changes.
func newTestScheduler(t *testing.T, adjust ...func(*Options)) *Scheduler {
	t.Helper()
	src := &catalog.Table{OID: srcOID, Schema: "app", Relname: "src", Name: "app.src", Kind: catalog.KindTable, Persistence: 'p', ReplicaIdentity: true}
	base := &catalog.View{OID: 1, Schema: "app", Relname: "base", Name: "app.base", Sources: []*catalog.Table{src}}
	dep := &catalog.View{OID: 2, Schema: "app", Relname: "dep", Name: "app.dep", Bases: []string{"app.base"}}
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait = 0, 0
	m := metrics.New(func() bool { return true }, func() bool { return false })
	opts := Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Metrics: m, Catalog: catalog.New(base, dep), Start: 0x100, Confirm: func(pglogrepl.LSN) {}}
	for _, f := range adjust {
		f(&opts)
	}
	return New(opts)
}

// commitForTest hands the scheduler a transaction changing app.src.
func (s *Scheduler) commitForTest(xid uint32, commitLSN, endLSN pglogrepl.LSN) {
	s.receive(streamItem{tx: &replication.Transaction{Xid: xid, CommitLSN: commitLSN, EndLSN: endLSN, CommitTime: s.now,
		Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}})
}

// nextForTest dispatches and returns the refresh handed out, failing if there is
// none or more than one.
func (s *Scheduler) nextForTest(t *testing.T) refresher.Request {
	t.Helper()
	s.dispatch()
	select {
	case req := <-s.jobs:
		select {
		case other := <-s.jobs:
			t.Fatalf("two refreshes handed out at once: %s and %s", req.View.Name, other.View.Name)
		default:
		}
		return req
	default:
		t.Fatal("no refresh handed out")
		return refresher.Request{}
	}
}

// succeedForTest reports the refresh req as done and recorded.
func (s *Scheduler) succeedForTest(req refresher.Request) {
	s.finish(result{view: req.View.Name, outcome: refresher.Outcome{LSN: req.LSN, Recorded: true}})
}

func (s *Scheduler) expectIdle(t *testing.T) {
	t.Helper()
	s.dispatch()
	select {
	case req := <-s.jobs:
		t.Fatalf("unexpected refresh of %s", req.View.Name)
	default:
	}
}

// txnsForTest lists the transactions req is for.
func txnsForTest(req refresher.Request) []refresher.Txn {
	var txns []refresher.Txn
	if req.TxnsFrom == 0 {
		return nil
	}
	for seq := req.TxnsFrom; seq <= req.Txns.To; seq++ {
		txns = append(txns, req.Txns.At(seq))
	}
	return txns
}

// unseenForTest is the outcome of req's refresh when its snapshot saw none
// of its transactions from the one with xid on (and all before it).
func unseenForTest(t *testing.T, req refresher.Request, xid uint32) refresher.Outcome {
	t.Helper()
	seq, txn, ok := req.Txns.Find(req.TxnsFrom, func(t refresher.Txn) bool { return t.Xid == xid })
	if !ok {
		t.Fatalf("the refresh is not for xid %d", xid)
	}
	return refresher.Outcome{LSN: txn.CommitLSN, Recorded: true, Unseen: seq, UnseenTxn: txn, VisibleBefore: seq}
}

func expectConfirmable(t *testing.T, s *Scheduler, want pglogrepl.LSN) {
	t.Helper()
	if got := s.watermark.Confirmable(); got != want {
		t.Fatalf("confirmable %s, want %s", got, want)
	}
}

func TestScheduler_CascadeHoldsTheSlotUntilTheDependentIsDone(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	if txns := txnsForTest(req); req.View.Name != "app.base" || req.LSN != 0x210 || len(txns) != 1 || txns[0].Xid != 7 || !req.Deferrable {
		t.Fatalf("first refresh %+v", req)
	}
	expectConfirmable(t, s, 0x200)
	s.succeedForTest(req)
	expectConfirmable(t, s, 0x200) // the cascade holds it now
	req = s.nextForTest(t)
	if req.View.Name != "app.dep" || req.Deferrable {
		t.Fatalf("cascade %+v, want app.dep, not deferrable", req)
	}
	s.succeedForTest(req)
	expectConfirmable(t, s, 0x210)
	s.expectIdle(t)
}

func TestScheduler_UnrecordedFailureKeepsItsHoldAndIsRetried(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Err: errors.New("connection lost")}})
	expectConfirmable(t, s, 0x200)
	s.expectIdle(t) // waiting out its backoff
	s.now = s.now.Add(retryBackoffBase + time.Millisecond)
	req = s.nextForTest(t)
	if req.View.Name != "app.base" {
		t.Fatalf("retry of %s, want app.base", req.View.Name)
	}
	s.succeedForTest(req)
	req = s.nextForTest(t)
	s.succeedForTest(req)
	expectConfirmable(t, s, 0x210)
}

func TestScheduler_RecordedFailureReleasesTheSlot(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Err: errors.New("division by zero"), Recorded: true}})
	expectConfirmable(t, s, 0x210)
	s.expectIdle(t) // no cascade from a failure; the retry waits
	if !s.debouncer.Pending("app.base") {
		t.Fatal("a failed view is not pending a retry")
	}
}

func TestScheduler_UnseenCommitsStayHeldAndAreRetried(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	s.commitForTest(8, 0x300, 0x310)
	req := s.nextForTest(t)
	if txns := txnsForTest(req); len(txns) != 2 {
		t.Fatalf("txns %+v, want both", txns)
	}
	// The refresh saw xid 8, not 7 (waiting for a synchronous standby).
	s.finish(result{view: "app.base", outcome: unseenForTest(t, req, 7)})
	expectConfirmable(t, s, 0x200)
	req = s.nextForTest(t) // the cascade of what it saw
	if req.View.Name != "app.dep" || req.LSN != 0x200 {
		t.Fatalf("cascade %+v, want app.dep at the oldest unseen commit", req)
	}
	s.succeedForTest(req)
	expectConfirmable(t, s, 0x200)

	s.now = s.now.Add(visibilityRetry.base + time.Millisecond)
	req = s.nextForTest(t)
	if txns := txnsForTest(req); req.View.Name != "app.base" || len(txns) == 0 || txns[0].Xid != 7 || !req.Deferrable {
		t.Fatalf("retry %+v, want app.base from xid 7", req)
	}
	// Still not visible: nothing ran, nothing moves, and it is tried again.
	deferred := unseenForTest(t, req, 7)
	deferred.Deferred, deferred.Recorded = true, false
	s.finish(result{view: "app.base", outcome: deferred})
	expectConfirmable(t, s, 0x200)
	s.expectIdle(t)
	s.now = s.now.Add(2*visibilityRetry.base + time.Millisecond)
	req = s.nextForTest(t)
	if req.View.Name != "app.base" {
		t.Fatalf("second retry of %s", req.View.Name)
	}
	s.succeedForTest(req)
	req = s.nextForTest(t)
	s.succeedForTest(req)
	expectConfirmable(t, s, 0x310)
}

func TestScheduler_ServerGoingAwayEndsTheRun(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	shutdown := fmt.Errorf("refresh app.base: %w", &pgconn.PgError{Code: pgerrcode.AdminShutdown, Message: "terminating connection due to administrator command"})
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Err: shutdown}})
	if !errors.Is(s.gone, ErrServerGoingAway) {
		t.Fatalf("gone = %v after a refresh failed with 57P01", s.gone)
	}
	expectConfirmable(t, s, 0x200)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerGoingAway) {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run went on with the server going away")
	}
}

// On a stop the scheduler starts nothing new, lets a running refresh
// finish within shutdown_timeout, and past it cancels the refresh's
// context, still waiting for its outcome, so its hold decides what the
// slot confirms.
func TestScheduler_StopWaitsForTheRunningRefreshThenCancelsIt(t *testing.T) {
	s := newTestScheduler(t, func(o *Options) { o.Config.ShutdownTimeout = 50 * time.Millisecond })
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	started := make(chan refresher.Request, 1)
	cancelled, report := make(chan struct{}), make(chan struct{})
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		s.Work(func(ctx context.Context, req refresher.Request) refresher.Outcome {
			started <- req
			<-ctx.Done()
			close(cancelled)
			<-report
			return refresher.Outcome{LSN: req.LSN, Err: ctx.Err()}
		})
	}()

	tx := &replication.Transaction{Xid: 7, CommitLSN: 0x200, EndLSN: 0x210, CommitTime: time.Now(),
		Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}
	if err := s.Commit(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh started")
	}
	stop()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the running refresh was not cancelled past shutdown_timeout")
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the running refresh reported", err)
	default:
	}
	close(report)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once the refresh reported")
	}
	select {
	case <-worked:
	case <-time.After(10 * time.Second):
		t.Fatal("Work did not return after Run")
	}
	if got := s.watermark.Confirmable(); got != 0x200 {
		t.Fatalf("confirmable %s after a cancelled refresh, want 0/200", got)
	}
}

// A try put off because its commit was not visible yet ran no refresh: the
// visibility retry comes after its backoff, not after min_interval.
func TestScheduler_PutOffTryDoesNotCountForMinInterval(t *testing.T) {
	s := newTestScheduler(t, func(o *Options) { o.Config.MinInterval = time.Minute })
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	out := unseenForTest(t, req, 7)
	out.Deferred, out.Recorded = true, false
	s.finish(result{view: "app.base", outcome: out})
	s.expectIdle(t)
	s.now = s.now.Add(visibilityRetry.base + time.Millisecond)
	if req := s.nextForTest(t); req.View.Name != "app.base" || req.Txns.Len() != 1 {
		t.Fatalf("retry %+v, want app.base for xid 7", req)
	}
}

// A server clock 5 s behind the daemon's must not make a commit made just
// now 5 s stale.
func TestScheduler_StalenessIsOnTheDaemonsClock(t *testing.T) {
	s := newTestScheduler(t)
	s.clockSkew = 5 * time.Second
	tx := &replication.Transaction{Xid: 7, CommitLSN: 0x200, EndLSN: 0x210, CommitTime: s.now.Add(-5 * time.Second),
		Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}
	if err := s.Commit(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	s.receive(<-s.inbox)
	if got := s.pending["app.base"].firstChangeAt; !got.Equal(s.now) {
		t.Fatalf("oldest change at %s, want %s (the commit on the daemon's clock)", got, s.now)
	}
	if s.catchUp.behind {
		t.Fatal("a commit made just now counts as a backlog")
	}
}
