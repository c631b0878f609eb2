package replication

import (
	"sync/atomic"

	"github.com/jackc/pglogrepl"
)

// forwardLSN is a WAL position that never moves backwards; any goroutine
// may move it or read it.
type forwardLSN struct {
	v atomic.Uint64
}

// advance moves the position to lsn unless it is already past it.
func (p *forwardLSN) advance(lsn pglogrepl.LSN) {
	for {
		old := p.v.Load()
		if uint64(lsn) <= old || p.v.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

func (p *forwardLSN) load() pglogrepl.LSN { return pglogrepl.LSN(p.v.Load()) }
