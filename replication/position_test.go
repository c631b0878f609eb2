package replication

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestForwardLSN_NeverMovesBackwards(t *testing.T) {
	var p forwardLSN
	for _, lsn := range []uint64{0x200, 0x100, 0x300, 0x2FF} {
		p.advance(pglogrepl.LSN(lsn))
	}
	if got := p.load(); got != 0x300 {
		t.Fatalf("position %s after 0/200, 0/100, 0/300, 0/2FF; want 0/300", got)
	}
}
