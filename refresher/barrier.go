package refresher

import (
	"context"
	"fmt"
)

// Writers lists the transactions (full 64-bit ids) running now that hold
// a lock for writing on one of tables or their partitions, for a refresh
// that must not take its snapshot before they have ended (see
// Request.Barrier). pgoutput publishes a change only if its table was in
// the publication when the change was written, so the rows a transaction
// running when a table joined the publication wrote before that are never
// streamed, even when it commits later: a refresh covers them only if its
// snapshot sees that transaction ended. Readers, refreshes among them,
// hold weaker locks and are not waited for.
func Writers(ctx context.Context, q Querier, tables []uint32) ([]uint64, error) {
	// A transaction's relation locks and the lock on its own id share its
	// virtual transaction. pg_partition_tree lists nothing for a table
	// outside any partition tree.
	var next int64
	var xids []int64
	err := q.QueryRow(ctx, `
		SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
		       array(SELECT DISTINCT t.transactionid::text::bigint
		             FROM pg_locks r
		             JOIN pg_locks t ON t.virtualtransaction = r.virtualtransaction AND t.locktype = 'transactionid'
		             WHERE r.locktype = 'relation'
		               AND r.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
		               AND r.relation IN (SELECT tbl FROM unnest($1::oid[]) tbl
		                                  UNION SELECT p.relid FROM unnest($1::oid[]) tbl, pg_partition_tree(tbl) p))`,
		tables).Scan(&next, &xids)
	if err != nil {
		return nil, fmt.Errorf("read the transactions writing to %d tables: %w", len(tables), err)
	}
	full := make([]uint64, len(xids))
	for i, x := range xids {
		full[i] = uint64(fullXid(uint32(x), next))
	}
	return full, nil
}

// fullXid is the 64-bit id of a transaction whose 32-bit id xid is within
// 2^31 of the snapshot's xmax: a running or recent transaction. (pg_locks
// shows 32-bit ids; a running transaction's id can be at or past xmax, so
// the snapshot's list of running ids does not name it.)
func fullXid(xid uint32, xmax int64) int64 {
	return xmax + int64(int32(xid-uint32(xmax)))
}
