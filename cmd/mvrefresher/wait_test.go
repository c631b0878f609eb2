package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/events"
)

// `mvrefresher wait` given --url and --lsn needs no database: with no
// database_url anywhere it asks the daemon and exits 0 once the view is
// fresh. Missing what it then needs is a clear error.
func TestWait_WithURLAndLSNNeedsNoDatabase(t *testing.T) {
	for _, name := range []string{"MVREFRESHER_DATABASE_URL", "DATABASE_URL"} {
		t.Setenv(name, "") // put back after the test
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	daemon := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/views/app.mv_totals/wait" || r.URL.Query().Get("lsn") != "0/16B3748" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(events.ViewState{View: "app.mv_totals", FreshThrough: "0/16B3790"})
	}))
	t.Cleanup(daemon.Close)
	waitCmd := func(args ...string) (string, int) {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"wait"}, args...), &out, &out); err != nil {
			return out.String(), exitCode(err)
		}
		return out.String(), 0
	}

	if out, code := waitCmd("--url", daemon.URL, "--view", "app.mv_totals", "--lsn", "0/16B3748"); code != 0 || !strings.Contains(out, "app.mv_totals is fresh through 0/16B3790") {
		t.Errorf("wait --url --view --lsn without database_url: exit %d, want 0\n%s", code, out)
	}
	if out, code := waitCmd("--url", daemon.URL, "--view", "app.mv_totals"); code != 2 || !strings.Contains(out, "--lsn or database_url is required") {
		t.Errorf("wait without --lsn nor database_url: exit %d, want 2 and what is missing\n%s", code, out)
	}
	nobody := freeAddr(t)
	if out, code := waitCmd("--listen", nobody, "--view", "app.mv_totals", "--lsn", "0/16B3748"); code != 2 || !strings.Contains(out, "http://"+nobody+" comes from listen; pass --url") {
		t.Errorf("wait without --url, no daemon on listen: exit %d, want 2 and where the address came from\n%s", code, out)
	}
}
