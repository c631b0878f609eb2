// Package api is the HTTP contract between the daemon and its clients: the
// paths and query parameters of its endpoints, the bounds of a wait's
// timeout, the error body, and the status codes that tell an unknown view,
// a daemon that is not streaming and a wait that timed out. The daemon
// serves it and package client asks it, so neither spells it on its own.
//
// A view's state, the body of a successful answer (a list of them for
// Views), is events.ViewState.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pglogrepl"
)

// The endpoints, as http.ServeMux patterns. {view} is a view's name as
// status prints it (or quoted, URL-escaped); WaitPath builds a wait's path.
const (
	// Views answers every managed view's state.
	Views = "GET /views"
	// View answers one view's state.
	View = "GET /views/{view}"
	// Wait answers a view's state once it is fresh through a WAL position
	// (query parameters LSNParam and TimeoutParam).
	Wait = "GET /views/{view}/wait"
	// Healthz answers 200 while the process works.
	Healthz = "GET /healthz"
	// Readyz answers 200 only while the daemon streams from its slot.
	Readyz = "GET /readyz"
	// Metrics serves Prometheus metrics.
	Metrics = "GET /metrics"
)

// ViewParam is the name of the {view} wildcard in View and Wait.
const ViewParam = "view"

// WaitPath is the path of a wait for one view.
func WaitPath(view string) string { return "/views/" + url.PathEscape(view) + "/wait" }

// Query parameters of Wait.
const (
	// LSNParam is the WAL position the view must be fresh through, such as
	// 0/16B3748; required.
	LSNParam = "lsn"
	// TimeoutParam is how long the daemon waits, a Go duration such as 5s;
	// DefaultWaitTimeout when absent, at most MaxWaitTimeout.
	TimeoutParam = "timeout"
)

// Bounds of Wait's timeout. A client waiting longer asks again.
const (
	DefaultWaitTimeout = 5 * time.Second
	MaxWaitTimeout     = 5 * time.Minute
)

// Status codes of the view endpoints' answers other than 200. Each has an
// Error body, except StatusNotFresh when the daemon could read the view's
// state.
const (
	// StatusBadWait: Wait's lsn or timeout is missing or malformed.
	StatusBadWait = http.StatusBadRequest
	// StatusUnknownView: the daemon does not manage the view.
	StatusUnknownView = http.StatusNotFound
	// StatusNotStreaming: the daemon streams from no slot now (it is
	// starting, reconnecting or standing by), so it cannot tell how fresh a
	// view is.
	StatusNotStreaming = http.StatusServiceUnavailable
	// StatusNotFresh: Wait's timeout passed before the view was fresh
	// through the position; the body is the view's state then.
	StatusNotFresh = http.StatusGatewayTimeout
)

// Error is the body of an answer that carries no view's state.
type Error struct {
	Error string `json:"error"`
}

// WaitQuery is the query of a wait until a view is fresh through lsn, for
// at most timeout.
func WaitQuery(lsn pglogrepl.LSN, timeout time.Duration) url.Values {
	return url.Values{LSNParam: {lsn.String()}, TimeoutParam: {timeout.String()}}
}

// ParseWaitQuery reads a wait's position and timeout from its query, with
// an error that tells a client what to send instead.
func ParseWaitQuery(q url.Values) (pglogrepl.LSN, time.Duration, error) {
	if q.Get(LSNParam) == "" {
		return 0, 0, errors.New("lsn is missing (a WAL position such as 0/16B3748, from pg_current_wal_insert_lsn() after the write's commit)")
	}
	lsn, err := pglogrepl.ParseLSN(q.Get(LSNParam))
	if err != nil {
		return 0, 0, fmt.Errorf("lsn %q: not a WAL position such as 0/16B3748", q.Get(LSNParam))
	}
	timeout := DefaultWaitTimeout
	if s := q.Get(TimeoutParam); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > MaxWaitTimeout {
			return 0, 0, fmt.Errorf("timeout %q: want a duration above 0 and at most %s, such as 5s", s, MaxWaitTimeout)
		}
	}
	return lsn, timeout, nil
}
