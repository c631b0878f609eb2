package daemon

import (
	"context"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// The errors of Views, View and WaitFresh.
var (
	// ErrUnknownView means a name is not a view the daemon manages.
	ErrUnknownView = schedule.ErrUnknownView
	// ErrNotStreaming means the daemon streams from no slot now (it is
	// starting, reconnecting or standing by), so it cannot tell how fresh a
	// view is.
	ErrNotStreaming = schedule.ErrNotStreaming
)

// Views returns the state of every managed view. It fails with
// ErrNotStreaming when no attempt streams within 2 s.
func (d *Daemon) Views(ctx context.Context) ([]events.ViewState, error) {
	return d.queries.Views(ctx)
}

// View returns the state of one managed view, named as PostgreSQL's
// format('%I.%I') spells it or unquoted: ErrUnknownView if the daemon does
// not manage it, ErrNotStreaming when no attempt streams within 2 s.
func (d *Daemon) View(ctx context.Context, name string) (events.ViewState, error) {
	return d.queries.View(ctx, name)
}

// WaitFresh waits until the view is fresh through lsn and returns its state
// then; it fails with ctx's error when ctx ends first (reconnections keep it
// waiting), or with ErrUnknownView.
func (d *Daemon) WaitFresh(ctx context.Context, name string, lsn pglogrepl.LSN) (events.ViewState, error) {
	return d.queries.WaitFresh(ctx, name, lsn)
}
