package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/daemon"
)

// Bounds of /views/{view}/wait's timeout parameter.
const (
	defaultWaitTimeout = 5 * time.Second
	maxWaitTimeout     = 5 * time.Minute
)

// handleViews serves the views' freshness: GET /views, /views/{view} and
// /views/{view}/wait?lsn=L&timeout=5s.
func handleViews(mux *http.ServeMux, d *daemon.Daemon) {
	mux.HandleFunc("GET /views", func(w http.ResponseWriter, r *http.Request) {
		views, err := d.Views(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, views)
	})
	mux.HandleFunc("GET /views/{view}", func(w http.ResponseWriter, r *http.Request) {
		v, err := d.View(r.Context(), r.PathValue("view"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /views/{view}/wait", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("view")
		lsn, timeout, err := waitParams(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		v, err := d.WaitFresh(ctx, name, lsn)
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			// Timed out: show how far the view is.
			v, err := d.View(r.Context(), name)
			if err != nil {
				writeJSON(w, http.StatusGatewayTimeout, errorBody{Error: fmt.Sprintf("%s is not fresh through %s after %s: %v", name, lsn, timeout, err)})
				return
			}
			writeJSON(w, http.StatusGatewayTimeout, v)
			return
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

func waitParams(r *http.Request) (pglogrepl.LSN, time.Duration, error) {
	q := r.URL.Query()
	if q.Get("lsn") == "" {
		return 0, 0, errors.New("lsn is missing (a WAL position such as 0/16B3748, from pg_current_wal_insert_lsn() after the write's commit)")
	}
	lsn, err := pglogrepl.ParseLSN(q.Get("lsn"))
	if err != nil {
		return 0, 0, fmt.Errorf("lsn %q: not a WAL position such as 0/16B3748", q.Get("lsn"))
	}
	timeout := defaultWaitTimeout
	if s := q.Get("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > maxWaitTimeout {
			return 0, 0, fmt.Errorf("timeout %q: want a duration above 0 and at most %s, such as 5s", s, maxWaitTimeout)
		}
	}
	return lsn, timeout, nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, daemon.ErrUnknownView):
		status = http.StatusNotFound
	case errors.Is(err, daemon.ErrNotStreaming):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body) // a client gone mid-answer is nothing to report
}
