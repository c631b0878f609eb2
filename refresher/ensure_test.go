package refresher

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mvrefresher/mvrefresher/internal/localpg"
)

// The two instances of an HA pair starting together both find the refresh
// log missing and create it at once: neither fails. Each round races a few
// creations of a new table.
func TestLog_EnsureAtOnce(t *testing.T) {
	ctx := context.Background()
	pool := startServer(t, localpg.Options{})
	for round := range 20 {
		log := NewLog("public", fmt.Sprintf("log_%d", round))
		start := make(chan struct{})
		errs := make(chan error, 4)
		var wg sync.WaitGroup
		for range cap(errs) {
			wg.Go(func() {
				<-start
				errs <- log.Ensure(ctx, pool)
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
