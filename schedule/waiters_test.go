package schedule

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/internal/wait"
)

// waitForTest asks the scheduler to answer once view is fresh through lsn.
func (s *Scheduler) waitForTest(ctx context.Context, view string, lsn pglogrepl.LSN) chan viewAnswer {
	reply := make(chan viewAnswer, 1)
	s.answer(viewQuery{ctx: ctx, view: view, wait: true, lsn: lsn, reply: reply})
	return reply
}

// expectAnswer checks that a wait was answered, fresh through want.
func expectAnswer(t *testing.T, reply chan viewAnswer, want string) {
	t.Helper()
	select {
	case a := <-reply:
		if a.err != nil || len(a.views) != 1 || a.views[0].FreshThrough != want {
			t.Fatalf("answer %+v, want fresh through %s", a, want)
		}
	default:
		t.Fatalf("not answered, want fresh through %s", want)
	}
}

func expectWaiting(t *testing.T, replies ...chan viewAnswer) {
	t.Helper()
	for _, r := range replies {
		select {
		case a := <-r:
			t.Fatalf("answered too early: %+v", a)
		default:
		}
	}
}

func expectError(t *testing.T, reply chan viewAnswer, want error) {
	t.Helper()
	select {
	case a := <-reply:
		if !errors.Is(a.err, want) {
			t.Fatalf("answer %+v, want %v", a, want)
		}
	default:
		t.Fatalf("not answered, want %v", want)
	}
}

// Each waiter is answered once its own view is fresh through its own
// position, however many wait on the same view for other positions.
func TestWaiters_AnsweredByViewAndPosition(t *testing.T) {
	s := newTestScheduler(t)
	ctx := context.Background()
	s.commitForTest(7, 0x200, 0x210)
	base210, dep210 := s.waitForTest(ctx, "app.base", 0x210), s.waitForTest(ctx, "app.dep", 0x210)
	base310 := s.waitForTest(ctx, "app.base", 0x310) // not received yet
	base180 := s.waitForTest(ctx, "app.base", 0x180) // fresh already
	expectAnswer(t, base180, "0/20F")
	expectWaiting(t, base210, dep210, base310)

	s.succeedForTest(s.nextForTest(t)) // app.base
	s.answerWaiters()
	expectAnswer(t, base210, "0/210")
	expectWaiting(t, dep210, base310)

	dep := s.nextForTest(t) // the cascade, covering 0/210
	s.commitForTest(8, 0x300, 0x310)
	s.answerWaiters()
	expectWaiting(t, dep210, base310)
	s.succeedForTest(dep)
	s.answerWaiters()
	expectAnswer(t, dep210, "0/30F")
	expectWaiting(t, base310)
	s.succeedForTest(s.nextForTest(t)) // app.base, covering 0/310
	s.answerWaiters()
	expectAnswer(t, base310, "0/310")
	if n := s.waiters.count; n != 0 {
		t.Fatalf("%d waiters kept after all were answered", n)
	}
}

// A waiter whose view is dropped is told so; one still waiting when the
// scheduler stops is told to ask the next one.
func TestWaiters_ViewDroppedAndSchedulerStopping(t *testing.T) {
	s := newTestScheduler(t)
	ctx := context.Background()
	s.commitForTest(7, 0x200, 0x210)
	onDep, onBase := s.waitForTest(ctx, "app.dep", 0x210), s.waitForTest(ctx, "app.base", 0x210)
	s.applyCatalog(CatalogUpdate{Catalog: catalog.New(s.catalog.Views["app.base"])})
	s.answerWaiters()
	expectError(t, onDep, ErrUnknownView)
	expectWaiting(t, onBase)
	s.dropWaiters()
	expectError(t, onBase, ErrNotStreaming)
	if n := s.waiters.count; n != 0 {
		t.Fatalf("%d waiters kept after the scheduler stopped", n)
	}
}

// Clients that gave up are dropped once they are half of the waiters held,
// without an answer; those still waiting are answered later.
func TestWaiters_GivenUpAreDropped(t *testing.T) {
	s := newTestScheduler(t)
	s.commitForTest(7, 0x200, 0x210)
	live := []chan viewAnswer{s.waitForTest(context.Background(), "app.base", 0x210), s.waitForTest(context.Background(), "app.dep", 0x210)}
	ctx, giveUp := context.WithCancel(context.Background())
	for range 3 {
		s.waitForTest(ctx, "app.base", 0x210)
	}
	giveUp()
	if err := wait.Until("the given-up waiters to be counted", 10*time.Second, func() (bool, error) {
		return s.waiters.gaveUp.Load() == 3, nil
	}); err != nil {
		t.Fatal(err)
	}
	s.answerWaiters()
	if n := s.waiters.count; n != 2 {
		t.Fatalf("%d waiters held, want the 2 still waiting", n)
	}
	s.succeedForTest(s.nextForTest(t))
	s.succeedForTest(s.nextForTest(t))
	s.answerWaiters()
	expectAnswer(t, live[0], "0/210")
	expectAnswer(t, live[1], "0/210")
	if n, gone := s.waiters.count, s.waiters.gaveUp.Load(); n != 0 || gone != 0 {
		t.Fatalf("%d waiters held, %d counted as given up, want none", n, gone)
	}
}
