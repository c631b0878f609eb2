// Package wait sleeps and polls under a deadline: the daemon's retries, the
// demo's pacing and the tests' waits for a condition.
package wait

import (
	"context"
	"fmt"
	"time"
)

// For sleeps for d, or until ctx ends; it reports whether all of d passed.
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// PollInterval is how often Until asks its condition.
const PollInterval = 20 * time.Millisecond

// Until asks cond every PollInterval until it holds, fails, or timeout has
// passed since the first ask; it returns cond's error, or one saying what
// timed out.
func Until(what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(PollInterval)
	}
}
