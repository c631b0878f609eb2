package schedule

import (
	"errors"
	"slices"
	"testing"

	"github.com/mvrefresher/mvrefresher/replication"
)

// newPartitionOID is a partition of app.src created after discovery.
const newPartitionOID = 16500

func (s *Scheduler) commitNewPartitionForTest(xid uint32, newRels map[uint32]ancestry) {
	s.receive(streamItem{tx: &replication.Transaction{Xid: xid, CommitLSN: 0x200, EndLSN: 0x210, CommitTime: s.now,
		Changes: []replication.RelationChange{{OID: newPartitionOID, Namespace: "app", Name: "src_2027", Rows: 1}}}, newRels: newRels})
}

// The scheduler's goroutine also answers the stream, the refreshes and the
// HTTP waits: it routes a change to a partition discovery did not see with
// the ancestors the stream's goroutine read, never with a query of its own
// (the test scheduler has no partition lookup: a call would panic).
func TestScheduler_RoutesANewPartitionWithoutAQueryOfItsOwn(t *testing.T) {
	s := newTestScheduler(t)
	s.commitNewPartitionForTest(7, map[uint32]ancestry{newPartitionOID: {ancestors: []uint32{newPartitionOID, srcOID}}})
	if w := s.pending["app.base"]; w == nil || !slices.Equal(w.sources, []string{"app.src"}) {
		t.Fatalf("pending work of app.base after a change to a new partition of app.src: %+v", w)
	}
	s.succeedForTest(s.nextForTest(t))
	s.succeedForTest(s.nextForTest(t)) // the cascade

	// Remembered: the stream's goroutine finds it in the cache next time.
	if got := s.resolveNewRelations(t.Context(), &replication.Transaction{
		Changes: []replication.RelationChange{{OID: srcOID}, {OID: newPartitionOID}}}); !slices.Equal(got[newPartitionOID].ancestors, []uint32{newPartitionOID, srcOID}) || len(got) != 1 {
		t.Fatalf("resolved %+v, want the cached ancestors of the new partition only", got)
	}
}

// A lookup that failed refreshes every view: a spurious refresh is better
// than a lost one.
func TestScheduler_UnresolvedNewRelationRefreshesEveryView(t *testing.T) {
	for name, newRels := range map[string]map[uint32]ancestry{
		"lookup failed": {newPartitionOID: {err: errors.New("timeout")}},
		"not looked up": nil, // the catalog changed on the way
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestScheduler(t)
			s.commitNewPartitionForTest(7, newRels)
			if s.pending["app.base"] == nil || s.pending["app.dep"] == nil {
				t.Fatalf("pending %v, want app.base and app.dep", s.pending)
			}
		})
	}
}
