package refresher

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestSeenBy(t *testing.T) {
	const epoch1 = int64(1) << 32
	tests := []struct {
		name    string
		xid     uint32
		xmax    int64
		running []int64
		want    bool
	}{
		{"completed before the snapshot", 700, 725, nil, true},
		{"not completed when the snapshot was taken (a commit waiting for a standby)", 725, 725, nil, false},
		{"in progress for the snapshot", 710, 725, []int64{710}, false},
		{"another transaction in progress", 711, 725, []int64{710}, true},
		{"previous epoch, just before the wrap", 0xFFFFFFF0, epoch1 + 5, nil, true},
		{"previous epoch, in progress", 0xFFFFFFF0, epoch1 + 5, []int64{epoch1 - 16}, false},
		{"this epoch, past xmax", 6, epoch1 + 5, nil, false},
		{"xmax just past the wrap, xid the first of the epoch", 0, epoch1 + 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := map[int64]bool{}
			for _, x := range tt.running {
				running[x] = true
			}
			if got := seenBy(tt.xid, tt.xmax, running); got != tt.want {
				t.Errorf("seenBy(%d, %d, %v) = %v, want %v", tt.xid, tt.xmax, tt.running, got, tt.want)
			}
		})
	}
}

func TestSnapshotCheck(t *testing.T) {
	// Transactions 1..6 with xids 101..106; the snapshot sees those in
	// seen.
	l := NewTxnLog()
	for seq := Seq(1); seq <= 6; seq++ {
		l.Append(Txn{Xid: 100 + uint32(seq), CommitLSN: pglogrepl.LSN(seq * 16)})
	}
	tests := []struct {
		name          string
		from, own, to Seq
		unseen        []uint32 // xids the snapshot does not see
		visibleBefore Seq
		wantUnseen    Seq
		sawOwn        bool
	}{
		{"sees all", 1, 3, 6, nil, 7, 0, true},
		{"misses its oldest only", 1, 3, 6, []uint32{103}, 3, 3, true},
		{"misses its newest only", 1, 3, 6, []uint32{106}, 6, 6, true},
		{"misses all of its own", 1, 3, 6, []uint32{103, 104, 105, 106}, 3, 3, false},
		{"misses an older one of another view, sees its own", 1, 3, 6, []uint32{102}, 2, 0, true},
		{"misses an older one and one of its own", 1, 3, 6, []uint32{102, 105}, 2, 5, true},
		{"misses an older one and all of its own", 1, 4, 6, []uint32{101, 104, 105, 106}, 1, 4, false},
		{"no own transactions: only how far it sees", 1, 0, 6, []uint32{104}, 4, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapshot{xmax: 200, running: map[int64]bool{}}
			for _, x := range tt.unseen {
				snap.running[int64(x)] = true
			}
			v := snap.check(l.Span(tt.from, tt.to), tt.own)
			if v.visibleBefore != tt.visibleBefore || v.unseen != tt.wantUnseen || v.sawOwn != tt.sawOwn {
				t.Fatalf("check = %+v, want visible before %d, unseen %d, saw its own %v", v, tt.visibleBefore, tt.wantUnseen, tt.sawOwn)
			}
			if v.unseen != 0 && v.unseenTxn.Xid != 100+uint32(v.unseen) {
				t.Fatalf("unseen transaction %+v, want xid %d", v.unseenTxn, 100+v.unseen)
			}
		})
	}
	if v := (snapshot{xmax: 200}).check(TxnSpan{}, 0); v != (visibility{}) {
		t.Fatalf("an empty span: %+v", v)
	}
}
