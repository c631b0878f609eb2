package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/api"
	"github.com/mvrefresher/mvrefresher/events"
)

// holdUntilGone is an answer status of the fake daemon: it cancels the
// client's context and answers nothing until the client has gone.
const holdUntilGone = 0

// answer is one answer of the fake daemon to a wait.
type answer struct {
	status int
	body   string
}

func stateBody(t *testing.T, st events.ViewState) string {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func errorBody(t *testing.T, msg string) string {
	t.Helper()
	b, err := json.Marshal(api.Error{Error: msg})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Wait against a fake daemon that answers as package api says: what it
// asks (path, position, a timeout within the daemon's bounds), how many
// requests a wait takes, and what each answer becomes.
func TestWait(t *testing.T) {
	const view = `"Sales"."Daily"` // escaped in the path
	lsn := pglogrepl.LSN(0x16B3748)
	fresh := events.ViewState{View: view, FreshThrough: "0/16B3790", ReceivedLSN: "0/16B3790"}
	behind := events.ViewState{View: view, FreshThrough: "0/16B3000", ReceivedLSN: "0/16B3790", Pending: true, PendingChanges: 3}

	for _, c := range []struct {
		name    string
		timeout time.Duration
		// answers are the daemon's, in order; the last one repeats.
		answers []answer
		// asked: every request's timeout is at most asked and within a
		// second of it.
		asked        time.Duration
		wantRequests int
		wantState    events.ViewState
		// wantIs is the sentinel the error wraps (nil: none of the
		// package's); wantMessage is in the error ("": no error).
		wantIs      error
		wantMessage string
	}{
		{
			name:    "fresh at once",
			timeout: 5 * time.Second, answers: []answer{{http.StatusOK, stateBody(t, fresh)}},
			asked: 5 * time.Second, wantRequests: 1, wantState: fresh,
		},
		{
			name:    "longer than the daemon waits: asks again",
			timeout: 12 * time.Minute,
			answers: []answer{{api.StatusNotFresh, stateBody(t, behind)}, {api.StatusNotFresh, stateBody(t, behind)}, {http.StatusOK, stateBody(t, fresh)}},
			asked:   api.MaxWaitTimeout, wantRequests: 3, wantState: fresh,
		},
		{
			name:    "timed out, with the view's state",
			timeout: time.Nanosecond, answers: []answer{{api.StatusNotFresh, stateBody(t, behind)}},
			asked: time.Millisecond, wantRequests: 1, wantState: behind,
			wantIs: ErrTimeout, wantMessage: "wait for " + view + " to be fresh through 0/16B3748: timed out",
		},
		{
			name:    "timed out, the daemon could not read the state",
			timeout: time.Nanosecond, answers: []answer{{api.StatusNotFresh, errorBody(t, view+" is not fresh through 0/16B3748 after 1ms: not streaming from the replication slot")}},
			asked: time.Millisecond, wantRequests: 1,
			wantIs: ErrTimeout, wantMessage: "timed out",
		},
		{
			name:    "timed out, an answer that is no JSON",
			timeout: time.Nanosecond, answers: []answer{{api.StatusNotFresh, "<html>gateway timeout</html>"}},
			asked: time.Millisecond, wantRequests: 1,
			wantIs: ErrTimeout, wantMessage: "timed out",
		},
		{
			name:    "unknown view: said once",
			timeout: 5 * time.Second, answers: []answer{{api.StatusUnknownView, errorBody(t, view+": not a managed view")}},
			asked: 5 * time.Second, wantRequests: 1,
			wantIs: ErrUnknownView, wantMessage: "answered 404 Not Found: not a managed view",
		},
		{
			name:    "unknown view, no error body",
			timeout: 5 * time.Second, answers: []answer{{api.StatusUnknownView, "404 page not found"}},
			asked: 5 * time.Second, wantRequests: 1,
			wantIs: ErrUnknownView, wantMessage: "answered 404 Not Found: not a managed view",
		},
		{
			name:    "not streaming: no retry",
			timeout: 5 * time.Second, answers: []answer{{api.StatusNotStreaming, errorBody(t, "not streaming from the replication slot")}},
			asked: 5 * time.Second, wantRequests: 1,
			wantMessage: "answered 503 Service Unavailable: not streaming from the replication slot",
		},
		{
			name:    "bad wait",
			timeout: 5 * time.Second, answers: []answer{{api.StatusBadWait, errorBody(t, `lsn "x": not a WAL position such as 0/16B3748`)}},
			asked: 5 * time.Second, wantRequests: 1,
			wantMessage: `answered 400 Bad Request: lsn "x": not a WAL position`,
		},
		{
			name:    "an error without a body",
			timeout: 5 * time.Second, answers: []answer{{http.StatusBadGateway, ""}},
			asked: 5 * time.Second, wantRequests: 1,
			wantMessage: "answered 502 Bad Gateway: 502 Bad Gateway",
		},
		{
			name:    "a state that is no JSON",
			timeout: 5 * time.Second, answers: []answer{{http.StatusOK, `{"view": `}},
			asked: 5 * time.Second, wantRequests: 1,
			wantMessage: "answer: unexpected EOF",
		},
		{
			name:    "context cancelled while waiting",
			timeout: 5 * time.Second, answers: []answer{{holdUntilGone, ""}},
			asked: 5 * time.Second, wantRequests: 1,
			wantIs: context.Canceled, wantMessage: "context canceled",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var (
				mu    sync.Mutex
				asked []time.Duration
			)
			mux := http.NewServeMux()
			mux.HandleFunc(api.Wait, func(w http.ResponseWriter, r *http.Request) {
				gotLSN, timeout, err := api.ParseWaitQuery(r.URL.Query())
				if got := r.PathValue(api.ViewParam); got != view || err != nil || gotLSN != lsn {
					t.Errorf("asked view %s at %s (%v), want %s at %s", got, gotLSN, err, view, lsn)
				}
				mu.Lock()
				asked = append(asked, timeout)
				a := c.answers[min(len(asked), len(c.answers))-1]
				mu.Unlock()
				if a.status == holdUntilGone {
					cancel()
					<-r.Context().Done()
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(a.status)
				_, _ = w.Write([]byte(a.body))
			})
			daemon := httptest.NewServer(mux)
			defer daemon.Close()

			st, err := New(daemon.URL+"/", daemon.Client()).Wait(ctx, view, lsn, c.timeout)

			if c.wantMessage == "" && err != nil {
				t.Fatalf("Wait: %v, want no error", err)
			}
			if c.wantMessage != "" && (err == nil || !strings.Contains(err.Error(), c.wantMessage)) {
				t.Fatalf("Wait: %v, want an error saying %q", err, c.wantMessage)
			}
			for _, sentinel := range []error{ErrTimeout, ErrUnknownView, context.Canceled} {
				if errors.Is(err, sentinel) != (sentinel == c.wantIs) {
					t.Errorf("Wait: %v: errors.Is(err, %v) = %t", err, sentinel, errors.Is(err, sentinel))
				}
			}
			if err != nil && strings.Count(err.Error(), ErrUnknownView.Error()) > 1 {
				t.Errorf("Wait: %v: says %q more than once", err, ErrUnknownView)
			}
			if !reflect.DeepEqual(st, c.wantState) {
				t.Errorf("Wait: state %+v, want %+v", st, c.wantState)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != c.wantRequests {
				t.Errorf("Wait took %d requests (timeouts %v), want %d", len(asked), asked, c.wantRequests)
			}
			for _, timeout := range asked {
				if timeout > c.asked || timeout <= c.asked-time.Second {
					t.Errorf("Wait asked for a timeout of %s, want at most %s and within a second of it", timeout, c.asked)
				}
			}
		})
	}
}

// A timeout of nothing is the caller's mistake: no request.
func TestWait_NoTimeout(t *testing.T) {
	daemon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("asked %s, want no request", r.URL)
	}))
	defer daemon.Close()
	_, err := New(daemon.URL, daemon.Client()).Wait(context.Background(), "app.v", 0, 0)
	if err == nil || !strings.Contains(err.Error(), "timeout 0s: want more than 0") {
		t.Errorf("Wait with timeout 0: %v, want an error saying the timeout is no wait", err)
	}
}
