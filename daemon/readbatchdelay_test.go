package daemon

import (
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
)

func TestReadBatchDelay(t *testing.T) {
	cfg := config.Default()
	cfg.Debounce = 2 * time.Second
	if got := readBatchDelay(cfg); got != 20*time.Millisecond {
		t.Errorf("debounce 2s: %s, want 20ms", got)
	}
	short := 100 * time.Millisecond
	cfg.Views = map[string]config.View{"app.fast": {Debounce: &short}}
	if got := readBatchDelay(cfg); got != time.Millisecond {
		t.Errorf("a view with debounce 100ms: %s, want 1ms (the stream raises it to its 2 ms floor)", got)
	}
}
