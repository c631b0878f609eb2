package schedule

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// expectFresh checks the position each view is fresh through; 0 means
// through nothing the daemon can vouch for.
func expectFresh(t *testing.T, s *Scheduler, want map[string]pglogrepl.LSN) {
	t.Helper()
	for view, w := range want {
		got, ok := s.freshThrough(view)
		if !ok {
			got = 0
		}
		if got != w {
			t.Errorf("%s fresh through %s, want %s", view, got, w)
		}
	}
}

func TestFreshThrough_CascadeAndWait(t *testing.T) {
	s := newTestScheduler(t)
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x100, "app.dep": 0x100})
	s.receive(streamItem{progress: 0x180}) // a keepalive: nothing in flight before it
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x180, "app.dep": 0x180})

	s.commitForTest(7, 0x200, 0x210)
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x20f, "app.dep": 0x20f})
	waiter := viewQuery{ctx: context.Background(), view: `"app"."dep"`, wait: true, lsn: 0x210, reply: make(chan viewAnswer, 1)}
	s.answer(waiter)
	expectNoAnswer(t, waiter)

	req := s.nextForTest(t)
	s.succeedForTest(req)
	s.answerWaiters()
	// The base is fresh; its dependent waits for the cascade.
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x210, "app.dep": 0x20f})
	expectNoAnswer(t, waiter)

	req = s.nextForTest(t)
	s.succeedForTest(req)
	s.answerWaiters()
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x210, "app.dep": 0x210})
	select {
	case a := <-waiter.reply:
		if a.err != nil || len(a.views) != 1 || a.views[0].View != "app.dep" || a.views[0].FreshThrough != "0/210" || a.views[0].Pending {
			t.Fatalf("answer %+v", a)
		}
		if lr := a.views[0].LastRefresh; lr == nil || lr.FreshThrough != "0/210" || lr.Reason != "cascade" {
			t.Fatalf("last refresh %+v", lr)
		}
	default:
		t.Fatal("the waiter was not answered once the cascade was done")
	}
}

func expectNoAnswer(t *testing.T, q viewQuery) {
	t.Helper()
	select {
	case a := <-q.reply:
		t.Fatalf("answered too early: %+v", a)
	default:
	}
}

func TestFreshThrough_RecordedFailureReleasesTheSlotButNotTheView(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: refresher.Outcome{LSN: req.LSN, Err: errors.New("division by zero"), Recorded: true}})
	expectConfirmable(t, s, 0x210)
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x20f, "app.dep": 0x20f})
	if lr := s.reporter.lastRefresh["app.base"]; lr == nil || lr.Status != "failed" || lr.FreshThrough != "0/20F" {
		t.Fatalf("the failed attempt's event %+v, want fresh through 0/20F", lr)
	}
}

func TestFreshThrough_UnseenCommitIsNotIncluded(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	s.commitForTest(8, 0x300, 0x310)
	req := s.nextForTest(t)
	s.finish(result{view: "app.base", outcome: unseenForTest(t, req, 8)})
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x2ff, "app.dep": 0x20f})
}

func TestFreshThrough_StartupVouchesForNothing(t *testing.T) {
	s := newTestScheduler(t)
	s.startup([]string{"app.base"}, nil)
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0, "app.dep": 0})
	st := s.viewState("app.dep")
	if st.FreshThrough != "" || !st.Pending {
		t.Fatalf("state %+v, want no fresh_through and pending", st)
	}
	s.succeedForTest(s.nextForTest(t))
	s.succeedForTest(s.nextForTest(t))
	expectFresh(t, s, map[string]pglogrepl.LSN{"app.base": 0x100, "app.dep": 0x100})
}

func TestFreshThrough_PageHeaderAndUnknownViews(t *testing.T) {
	s := newTestScheduler(t)
	s.wal = replication.WALGeometry{BlockSize: 8192, SegmentSize: 16 << 20}
	s.watermark.Seen(0x2000) // a record ended the page
	// pg_current_wal_lsn() is past the next page's header.
	q := viewQuery{ctx: context.Background(), view: "app.base", wait: true, lsn: 0x2000 + 24, reply: make(chan viewAnswer, 1)}
	s.answer(q)
	if a := <-q.reply; a.err != nil {
		t.Fatal(a.err)
	}
	q = viewQuery{ctx: context.Background(), view: "app.nosuch", reply: make(chan viewAnswer, 1)}
	s.answer(q)
	if a := <-q.reply; !errors.Is(a.err, ErrUnknownView) {
		t.Fatalf("unknown view: %v, want ErrUnknownView", a.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	s.answer(viewQuery{ctx: ctx, view: "app.base", wait: true, lsn: 0x9000, reply: make(chan viewAnswer, 1)})
	s.answerWaiters()
	if s.waiters.count != 0 {
		t.Fatal("a waiter that gave up is kept")
	}
}
