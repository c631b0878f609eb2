package schedule

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
)

// ErrUnknownView means a name is not a view the daemon manages.
var ErrUnknownView = errors.New("not a managed view")

// ErrNotStreaming means the daemon streams from no slot now (it is starting,
// reconnecting or standing by), so it cannot tell how fresh a view is.
var ErrNotStreaming = errors.New("not streaming from the replication slot")

// viewQuery asks the scheduler for the state of one view (view set) or of
// every view; with wait, it is answered once the view is fresh through lsn,
// or never if ctx ends first.
type viewQuery struct {
	ctx   context.Context
	view  string
	wait  bool
	lsn   pglogrepl.LSN
	reply chan viewAnswer // buffered: the scheduler never blocks on it
}

type viewAnswer struct {
	views []events.ViewState
	err   error
}

// Queries carries questions about the views' freshness (the HTTP
// endpoints') to the scheduler streaming now (Options.Queries). One
// outlives the daemon's attempts: a wait goes on across reconnections.
type Queries struct {
	ch chan viewQuery
}

func NewQueries() *Queries { return &Queries{ch: make(chan viewQuery)} }

// Views returns the state of every managed view. It fails with
// ErrNotStreaming when no attempt streams within 2 s.
func (q *Queries) Views(ctx context.Context) ([]events.ViewState, error) {
	a, err := q.ask(ctx, viewQuery{})
	return a.views, err
}

// View returns the state of one managed view, named as PostgreSQL's
// format('%I.%I') spells it or unquoted: ErrUnknownView if the daemon does
// not manage it, ErrNotStreaming when no attempt streams within 2 s.
func (q *Queries) View(ctx context.Context, name string) (events.ViewState, error) {
	a, err := q.ask(ctx, viewQuery{view: name})
	if err != nil {
		return events.ViewState{}, err
	}
	return a.views[0], nil
}

// WaitFresh waits until the view is fresh through lsn and returns its state
// then; it fails with ctx's error when ctx ends first (reconnections keep it
// waiting), or with ErrUnknownView.
func (q *Queries) WaitFresh(ctx context.Context, name string, lsn pglogrepl.LSN) (events.ViewState, error) {
	for {
		a, err := q.ask(ctx, viewQuery{view: name, wait: true, lsn: lsn})
		switch {
		case errors.Is(err, ErrNotStreaming) && ctx.Err() == nil:
			continue // the attempt ended while the query waited: ask the next one
		case err != nil:
			return events.ViewState{}, err
		}
		return a.views[0], nil
	}
}

// notStreamingAfter is how long a query for a view's state waits for an
// attempt that streams (a reconnection takes a moment).
const notStreamingAfter = 2 * time.Second

// ask hands query to the scheduler streaming now and returns its answer.
func (q *Queries) ask(ctx context.Context, query viewQuery) (viewAnswer, error) {
	query.ctx, query.reply = ctx, make(chan viewAnswer, 1)
	var notStreaming <-chan time.Time
	if !query.wait {
		t := time.NewTimer(notStreamingAfter)
		defer t.Stop()
		notStreaming = t.C
	}
	select {
	case q.ch <- query:
	case <-notStreaming:
		return viewAnswer{}, ErrNotStreaming
	case <-ctx.Done():
		return viewAnswer{}, ctx.Err()
	}
	select {
	case a := <-query.reply:
		return a, a.err
	case <-ctx.Done():
		return viewAnswer{}, ctx.Err()
	}
}
