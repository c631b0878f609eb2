package refresher

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// snapshot is what decides which committed transactions a snapshot sees:
// those completed before it was taken (below xmax) and not running then.
type snapshot struct {
	xmax    int64
	running map[int64]bool
	// text is the snapshot as pg_snapshot's text, for SQL.
	text string
}

// currentSnapshot reads the snapshot of tx (the refresh's, at the
// isolation level of its statements, READ COMMITTED: taken now, and the
// REFRESH's sees at least as much).
func currentSnapshot(ctx context.Context, tx pgx.Tx) (snapshot, error) {
	var xmax int64
	var running []int64
	var text string
	if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmax(s)::text::bigint, array(SELECT pg_snapshot_xip(s)::text::bigint), s::text
		FROM pg_current_snapshot() s`).Scan(&xmax, &running, &text); err != nil {
		return snapshot{}, fmt.Errorf("read the refresh's snapshot: %w", err)
	}
	s := snapshot{xmax: xmax, running: make(map[int64]bool, len(running)), text: text}
	for _, x := range running {
		s.running[x] = true
	}
	return s, nil
}

// sees reports whether the snapshot sees the committed transaction t. The
// snapshot holds full (64-bit) ids; a decoded xid is their low 32 bits, and
// is within 2^31 of the snapshot's xmax.
func (s snapshot) sees(t Txn) bool { return seenBy(t.Xid, s.xmax, s.running) }

func (s snapshot) missed(t Txn) bool { return !s.sees(t) }

// seenBy reports whether a snapshot with xmax and running transactions
// sees the committed transaction xid.
func seenBy(xid uint32, xmax int64, running map[int64]bool) bool {
	full := fullXid(xid, xmax)
	return full < xmax && !running[full]
}

// oldestRunning returns the oldest of xids (full ids) the snapshot does not
// see as ended, or 0 when it sees them all ended. A commit waiting for a
// synchronous standby is still running for the snapshot, as it should be:
// its rows are not visible yet.
func (s snapshot) oldestRunning(xids []uint64) uint64 {
	var oldest uint64
	for _, x := range xids {
		if (int64(x) >= s.xmax || s.running[int64(x)]) && (oldest == 0 || x < oldest) {
			oldest = x
		}
	}
	return oldest
}

// visibility is what a snapshot saw of a request's transactions.
type visibility struct {
	// visibleBefore: it saw every transaction of the span before this one.
	visibleBefore Seq
	// unseen is the oldest of those from own on it did not see (0: none),
	// unseenTxn that transaction; sawOwn: it saw at least one from own on.
	unseen    Seq
	unseenTxn Txn
	sawOwn    bool
}

// check finds what the snapshot saw of txns, own being where the request's
// own transactions start (0: it has none). Every scan stops at the first
// transaction that answers it: a backlog the snapshot sees whole is read
// once, and transactions it does not see are few (each is a session
// waiting in its commit: a synchronous standby's confirmation), so finding
// one it sees after them is quick.
func (s snapshot) check(txns TxnSpan, own Seq) visibility {
	var v visibility
	if txns.Empty() {
		return v
	}
	first, t, missed := txns.Find(txns.From, s.missed)
	v.visibleBefore = txns.To + 1
	if missed {
		v.visibleBefore = first
	}
	if own == 0 || own > txns.To {
		return v
	}
	if missed && first < own {
		first, t, missed = txns.Find(own, s.missed)
	}
	if !missed {
		v.sawOwn = true
		return v
	}
	v.unseen, v.unseenTxn = first, t
	v.sawOwn = first > own
	if !v.sawOwn {
		_, _, v.sawOwn = txns.Find(own+1, s.sees)
	}
	return v
}
