package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
)

// fakeDaemon answers the HTTP endpoints' questions from a fixed state, as
// the scheduler would: a wait returns once the view is fresh through the
// position, or when its context ends.
type fakeDaemon struct {
	views     []events.ViewState
	streaming bool
	standby   bool
	// viewFails: View fails once a wait has timed out, as it does when the
	// stream ends meanwhile.
	viewFails bool
	// mayWait is how long the last WaitFresh's context let it wait.
	mayWait time.Duration
}

func (f *fakeDaemon) Views(context.Context) ([]events.ViewState, error) {
	if !f.streaming {
		return nil, ErrNotStreaming
	}
	return f.views, nil
}

func (f *fakeDaemon) View(_ context.Context, name string) (events.ViewState, error) {
	if !f.streaming || f.viewFails {
		return events.ViewState{}, ErrNotStreaming
	}
	for _, v := range f.views {
		if v.View == name {
			return v, nil
		}
	}
	return events.ViewState{}, fmt.Errorf("%s: %w", name, ErrUnknownView)
}

func (f *fakeDaemon) WaitFresh(ctx context.Context, name string, lsn pglogrepl.LSN) (events.ViewState, error) {
	if deadline, ok := ctx.Deadline(); ok {
		f.mayWait = time.Until(deadline)
	}
	for _, v := range f.views {
		if v.View != name {
			continue
		}
		if through, err := pglogrepl.ParseLSN(v.FreshThrough); err == nil && through >= lsn {
			return v, nil
		}
		<-ctx.Done()
		return events.ViewState{}, ctx.Err()
	}
	return events.ViewState{}, fmt.Errorf("%s: %w", name, ErrUnknownView)
}

func (f *fakeDaemon) Ready() bool   { return f.streaming }
func (f *fakeDaemon) Standby() bool { return f.standby }

func (f *fakeDaemon) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "mvrefresher_pending_views 0")
	})
}

// The endpoints' status codes, bodies and content types for each kind of
// answer, without a server.
func TestHandler(t *testing.T) {
	totals := events.ViewState{View: "app.mv_totals", FreshThrough: "0/16B3790", ReceivedLSN: "0/16B3790"}
	quoted := events.ViewState{View: `"Sales"."Daily"`, FreshThrough: "0/16B3000", ReceivedLSN: "0/16B3790", Pending: true}
	const jsonType, textType = "application/json", "text/plain; charset=utf-8"
	streaming := fakeDaemon{views: []events.ViewState{totals, quoted}, streaming: true}
	reconnecting := fakeDaemon{views: streaming.views}
	standby := fakeDaemon{views: streaming.views, standby: true}
	streamEnded := fakeDaemon{views: streaming.views, streaming: true, viewFails: true}

	for _, c := range []struct {
		daemon   fakeDaemon
		path     string
		gone     bool // the client went away before the answer
		want     int
		wantType string
		wantBody string // in the body
	}{
		{streaming, "/healthz", false, http.StatusOK, textType, "ok\n"},
		{reconnecting, "/healthz", false, http.StatusOK, textType, "ok\n"},
		{streaming, "/readyz", false, http.StatusOK, textType, "streaming\n"},
		{reconnecting, "/readyz", false, http.StatusServiceUnavailable, textType, "not streaming from the replication slot\n"},
		{standby, "/readyz", false, http.StatusServiceUnavailable, textType, "standby: another instance is streaming from the replication slot\n"},
		{streaming, "/metrics", false, http.StatusOK, textType, "mvrefresher_pending_views 0"},

		{streaming, "/views", false, http.StatusOK, jsonType, `[{"view":"app.mv_totals"`},
		{reconnecting, "/views", false, http.StatusServiceUnavailable, jsonType, `{"error":"not streaming from the replication slot"}`},
		{streaming, "/views/app.mv_totals", false, http.StatusOK, jsonType, `"fresh_through":"0/16B3790"`},
		{streaming, "/views/%22Sales%22.%22Daily%22", false, http.StatusOK, jsonType, `"pending":true`},
		{streaming, "/views/app.nosuch", false, http.StatusNotFound, jsonType, `{"error":"app.nosuch: not a managed view"}`},
		{reconnecting, "/views/app.mv_totals", false, http.StatusServiceUnavailable, jsonType, `{"error":"not streaming from the replication slot"}`},

		{streaming, "/views/app.mv_totals/wait?lsn=0/16B3790", false, http.StatusOK, jsonType, `"view":"app.mv_totals"`},
		{streaming, "/views/app.mv_totals/wait?lsn=0/16B3790&timeout=5m", false, http.StatusOK, jsonType, `"view":"app.mv_totals"`},
		{streaming, "/views/app.nosuch/wait?lsn=0/0", false, http.StatusNotFound, jsonType, `{"error":"app.nosuch: not a managed view"}`},
		{streaming, "/views/app.mv_totals/wait", false, http.StatusBadRequest, jsonType, `{"error":"lsn is missing`},
		{streaming, "/views/app.mv_totals/wait?lsn=12345", false, http.StatusBadRequest, jsonType, `{"error":"lsn \"12345\": not a WAL position`},
		{streaming, "/views/app.mv_totals/wait?lsn=0/0&timeout=soon", false, http.StatusBadRequest, jsonType, `{"error":"timeout \"soon\": want a duration above 0 and at most 5m0s`},
		{streaming, "/views/app.mv_totals/wait?lsn=0/0&timeout=1h", false, http.StatusBadRequest, jsonType, `{"error":"timeout \"1h\"`},
		{streaming, "/views/app.mv_totals/wait?lsn=0/0&timeout=0s", false, http.StatusBadRequest, jsonType, `{"error":"timeout \"0s\"`},
		{streaming, "/views/%22Sales%22.%22Daily%22/wait?lsn=0/16B3790&timeout=1ms", false, http.StatusGatewayTimeout, jsonType, `"fresh_through":"0/16B3000","received_lsn":"0/16B3790","pending":true`},
		{streamEnded, "/views/%22Sales%22.%22Daily%22/wait?lsn=0/16B3790&timeout=1ms", false, http.StatusGatewayTimeout, jsonType, `{"error":"\"Sales\".\"Daily\" is not fresh through 0/16B3790 after 1ms: not streaming from the replication slot"}`},
		{streaming, "/views/%22Sales%22.%22Daily%22/wait?lsn=0/16B3790", true, http.StatusOK, "", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, c.path, nil)
		if c.gone {
			ctx, cancel := context.WithCancel(req.Context())
			cancel()
			req = req.WithContext(ctx)
		}
		rec := httptest.NewRecorder()
		newHandler(&c.daemon).ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != c.want || rec.Header().Get("Content-Type") != c.wantType || !strings.Contains(body, c.wantBody) || (c.wantBody == "" && body != "") {
			t.Errorf("GET %s (streaming %t, standby %t, gone %t): %d %q %q, want %d %q with %q",
				c.path, c.daemon.streaming, c.daemon.standby, c.gone, rec.Code, rec.Header().Get("Content-Type"), body, c.want, c.wantType, c.wantBody)
		}
	}
}

// A wait's timeout bounds the daemon's wait: the default without one.
func TestHandler_WaitTimeout(t *testing.T) {
	d := &fakeDaemon{views: []events.ViewState{{View: "app.v", FreshThrough: "0/20"}}, streaming: true}
	for _, c := range []struct {
		query string
		want  time.Duration
	}{
		{"lsn=0/20&timeout=30s", 30 * time.Second},
		{"lsn=0/20&timeout=5m", 5 * time.Minute},
		{"lsn=0/20", 5 * time.Second},
	} {
		d.mayWait = 0
		rec := httptest.NewRecorder()
		newHandler(d).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/views/app.v/wait?"+c.query, nil))
		if rec.Code != http.StatusOK || d.mayWait > c.want || d.mayWait < c.want-time.Second {
			t.Errorf("wait?%s: %d, the daemon may wait %s, want 200 and %s", c.query, rec.Code, d.mayWait, c.want)
		}
	}
}
