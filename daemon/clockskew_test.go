package daemon

import (
	"testing"
	"time"
)

func TestSkewAt_TakesTheServerReadingAsMadeHalfwayThroughTheRoundTrip(t *testing.T) {
	before := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	after := before.Add(20 * time.Millisecond)
	server := before.Add(10 * time.Millisecond).Add(-5 * time.Second) // 5 s behind
	if got := skewAt(before, server, after); got != 5*time.Second {
		t.Fatalf("skew %s, want 5s", got)
	}
}
