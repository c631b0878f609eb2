// Package client lets an application read its own writes through
// mvrefresher: after a commit, it waits until a view's last refresh includes
// the commit, asking the daemon's HTTP endpoints (`listen`) as package api
// describes them.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/api"
	"github.com/mvrefresher/mvrefresher/events"
)

var (
	// ErrTimeout: the view was not fresh through the position in time.
	ErrTimeout = errors.New("timed out")
	// ErrUnknownView: the daemon does not manage the view.
	ErrUnknownView = errors.New("not a managed view")
)

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
		// The daemon waits api.MaxWaitTimeout at most: a longer wait asks again.
		chunk := min(time.Until(deadline), api.MaxWaitTimeout)
		if chunk <= 0 {
			chunk = time.Millisecond // a last look
		}
		var st events.ViewState
		err := c.get(ctx, api.WaitPath(view)+"?"+api.WaitQuery(lsn, chunk).Encode(), &st)
		if errors.Is(err, ErrTimeout) && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("wait for %s to be fresh through %s: %w", view, lsn, err)
		}
		return st, nil
	}
}

// get decodes the answer to GET path into out; a timed-out wait's state too.
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
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("read %s's answer: %w", c.base, err)
		}
		return nil
	case api.StatusNotFresh:
		_ = json.NewDecoder(resp.Body).Decode(out) // the state, when the daemon could read it
		return ErrTimeout
	case api.StatusUnknownView:
		// The status says it all; the daemon's message would say it again.
		return fmt.Errorf("%s answered %s: %w", c.base, resp.Status, ErrUnknownView)
	}
	var body api.Error
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
		body.Error = resp.Status
	}
	return fmt.Errorf("%s answered %s: %s", c.base, resp.Status, body.Error)
}
