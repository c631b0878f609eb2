package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/api"
	"github.com/mvrefresher/mvrefresher/events"
)

// Handler serves the daemon's HTTP endpoints, as package api describes
// them: each view's freshness and the wait for it, health, readiness and
// metrics.
func (d *Daemon) Handler() http.Handler { return newHandler(d) }

// served is what the HTTP endpoints ask of the daemon. Only these
// exported methods: the handler's tests answer them without a server.
type served interface {
	Views(ctx context.Context) ([]events.ViewState, error)
	View(ctx context.Context, name string) (events.ViewState, error)
	WaitFresh(ctx context.Context, name string, lsn pglogrepl.LSN) (events.ViewState, error)
	Ready() bool
	Standby() bool
	MetricsHandler() http.Handler
}

func newHandler(d served) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(api.Metrics, d.MetricsHandler())
	mux.HandleFunc(api.Healthz, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(api.Readyz, func(w http.ResponseWriter, _ *http.Request) {
		if d.Standby() {
			http.Error(w, "standby: another instance is streaming from the replication slot", http.StatusServiceUnavailable)
			return
		}
		if !d.Ready() {
			http.Error(w, "not streaming from the replication slot", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "streaming")
	})
	mux.HandleFunc(api.Views, func(w http.ResponseWriter, r *http.Request) {
		views, err := d.Views(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, views)
	})
	mux.HandleFunc(api.View, func(w http.ResponseWriter, r *http.Request) {
		v, err := d.View(r.Context(), r.PathValue(api.ViewParam))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc(api.Wait, func(w http.ResponseWriter, r *http.Request) { serveWait(w, r, d) })
	return mux
}

// serveWait answers once the view is fresh through the asked position, or
// with the view's state when the timeout passes first.
func serveWait(w http.ResponseWriter, r *http.Request, d served) {
	name := r.PathValue(api.ViewParam)
	lsn, timeout, err := api.ParseWaitQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, api.StatusBadWait, api.Error{Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	v, err := d.WaitFresh(ctx, name, lsn)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		// Timed out: show how far the view is.
		v, err := d.View(r.Context(), name)
		if err != nil {
			writeJSON(w, api.StatusNotFresh, api.Error{Error: fmt.Sprintf("%s is not fresh through %s after %s: %v", name, lsn, timeout, err)})
			return
		}
		writeJSON(w, api.StatusNotFresh, v)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// writeError answers err with the status that tells its kind.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnknownView):
		status = api.StatusUnknownView
	case errors.Is(err, ErrNotStreaming):
		status = api.StatusNotStreaming
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	writeJSON(w, status, api.Error{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body) // a client gone mid-answer is nothing to report
}
