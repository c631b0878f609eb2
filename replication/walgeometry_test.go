package replication

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestLastRecordEnd(t *testing.T) {
	g := WALGeometry{BlockSize: 8192, SegmentSize: 16 << 20}
	for _, c := range []struct{ insert, want pglogrepl.LSN }{
		{0x3000000 + 40, 0x3000000}, // a segment's first page: long header
		{0x3002000 + 24, 0x3002000}, // another page: short header
		{0x3002000 + 100, 0x3002000 + 100},
		{0x3002000 + 40, 0x3002000 + 40}, // past a short header: a record ended there
	} {
		if got := g.LastRecordEnd(c.insert); got != c.want {
			t.Errorf("LastRecordEnd(%s) = %s, want %s", c.insert, got, c.want)
		}
	}
}
