package daemon

import (
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/replication"
)

func TestSkewAt_TakesTheServerReadingAsMadeHalfwayThroughTheRoundTrip(t *testing.T) {
	before := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	after := before.Add(20 * time.Millisecond)
	server := before.Add(10 * time.Millisecond).Add(-5 * time.Second) // 5 s behind
	if got := skewAt(before, server, after); got != 5*time.Second {
		t.Fatalf("skew %s, want 5s", got)
	}
}

// A server clock 5 s behind the daemon's must not make a commit made just
// now 5 s stale.
func TestScheduler_StalenessIsOnTheDaemonsClock(t *testing.T) {
	s := newTestScheduler(t)
	s.clockSkew = 5 * time.Second
	tx := &replication.Transaction{Xid: 7, CommitLSN: 0x200, EndLSN: 0x210, CommitTime: s.now.Add(-5 * time.Second),
		Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}
	if err := s.Commit(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	s.receive(<-s.inbox)
	if got := s.pending["app.base"].firstChangeAt; !got.Equal(s.now) {
		t.Fatalf("oldest change at %s, want %s (the commit on the daemon's clock)", got, s.now)
	}
	if s.behind {
		t.Fatal("a commit made just now counts as a backlog")
	}
}
