package refresher

import "testing"

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
