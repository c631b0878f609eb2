package wait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	if !For(context.Background(), time.Millisecond) {
		t.Error("For with a live context reported an interruption")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if For(ctx, time.Hour) {
		t.Error("For with an ended context reported that the hour passed")
	}
}

func TestUntil(t *testing.T) {
	calls := 0
	if err := Until("the third call", time.Minute, func() (bool, error) { calls++; return calls == 3, nil }); err != nil || calls != 3 {
		t.Errorf("Until: %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := Until("x", time.Minute, func() (bool, error) { return false, boom }); !errors.Is(err, boom) || !strings.Contains(err.Error(), "waiting for x") {
		t.Errorf("Until with a failing condition: %v", err)
	}
	if err := Until("nothing", 0, func() (bool, error) { return false, nil }); err == nil || !strings.Contains(err.Error(), "timed out after 0s waiting for nothing") {
		t.Errorf("Until that times out: %v", err)
	}
}
