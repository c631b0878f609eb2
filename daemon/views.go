package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
)

// Views returns the state of every managed view. It fails with
// ErrNotStreaming when no attempt streams within 2 s.
func (d *Daemon) Views(ctx context.Context) ([]events.ViewState, error) {
	a, err := d.ask(ctx, viewQuery{})
	return a.views, err
}

// View returns the state of one managed view, named as PostgreSQL's
// format('%I.%I') spells it or unquoted: ErrUnknownView if the daemon does
// not manage it, ErrNotStreaming when no attempt streams within 2 s.
func (d *Daemon) View(ctx context.Context, name string) (events.ViewState, error) {
	a, err := d.ask(ctx, viewQuery{view: name})
	if err != nil {
		return events.ViewState{}, err
	}
	return a.views[0], nil
}

// WaitFresh waits until the view is fresh through lsn and returns its state
// then; it fails with ctx's error when ctx ends first (reconnections keep it
// waiting), or with ErrUnknownView.
func (d *Daemon) WaitFresh(ctx context.Context, name string, lsn pglogrepl.LSN) (events.ViewState, error) {
	for {
		a, err := d.ask(ctx, viewQuery{view: name, wait: true, lsn: lsn})
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

// ask hands q to the scheduler streaming now and returns its answer.
func (d *Daemon) ask(ctx context.Context, q viewQuery) (viewAnswer, error) {
	q.ctx, q.reply = ctx, make(chan viewAnswer, 1)
	var notStreaming <-chan time.Time
	if !q.wait {
		t := time.NewTimer(notStreamingAfter)
		defer t.Stop()
		notStreaming = t.C
	}
	select {
	case d.queries <- q:
	case <-notStreaming:
		return viewAnswer{}, ErrNotStreaming
	case <-ctx.Done():
		return viewAnswer{}, ctx.Err()
	}
	select {
	case a := <-q.reply:
		return a, a.err
	case <-ctx.Done():
		return viewAnswer{}, ctx.Err()
	}
}
