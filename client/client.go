// Package client lets an application read its own writes through
// mvrefresher: after a commit, it waits until a view's last refresh includes
// the commit, asking the daemon's HTTP endpoints (`listen`).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/events"
)

var (
	// ErrTimeout: the view was not fresh through the position in time.
	ErrTimeout = errors.New("timed out")
	// ErrUnknownView: the daemon does not manage the view.
	ErrUnknownView = errors.New("not a managed view")
)

// maxWait is the longest wait the daemon accepts in one request.
const maxWait = 5 * time.Minute

// Client asks one daemon.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the daemon serving on baseURL, such as
// http://127.0.0.1:9188. A nil httpClient is http.DefaultClient.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: httpClient}
}

// Wait returns once the view (schema.view) is fresh through lsn: every
// transaction that committed at or before lsn is in the view. Read lsn with
// SELECT pg_current_wal_insert_lsn() after the commit (pg_current_wal_lsn()
// can be short of an asynchronous commit). It fails with ErrTimeout
// (and the view's state) when timeout passes first.
func (c *Client) Wait(ctx context.Context, view string, lsn pglogrepl.LSN, timeout time.Duration) (events.ViewState, error) {
	if timeout <= 0 {
		return events.ViewState{}, fmt.Errorf("wait for %s: timeout %s: want more than 0", view, timeout)
	}
	deadline := time.Now().Add(timeout)
	for {
		chunk := min(time.Until(deadline), maxWait)
		if chunk <= 0 {
			chunk = time.Millisecond // a last look
		}
		q := url.Values{"lsn": {lsn.String()}, "timeout": {chunk.String()}}
		var st events.ViewState
		err := c.get(ctx, "/views/"+url.PathEscape(view)+"/wait?"+q.Encode(), &st)
		if errors.Is(err, ErrTimeout) && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("wait for %s to be fresh through %s: %w", view, lsn, err)
		}
		return st, nil
	}
}

// get decodes the answer to GET path into out; a 504's state too.
func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close() //nolint:errcheck // the body is read in full or the error reported
	switch resp.StatusCode {
	case http.StatusOK:
		return json.NewDecoder(resp.Body).Decode(out)
	case http.StatusGatewayTimeout:
		_ = json.NewDecoder(resp.Body).Decode(out) // the state, when the daemon could read it
		return ErrTimeout
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
		body.Error = resp.Status
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrUnknownView, body.Error)
	}
	return fmt.Errorf("%s answered %s: %s", c.base, resp.Status, body.Error)
}
