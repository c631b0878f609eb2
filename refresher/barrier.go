package refresher

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Running lists the transactions (full 64-bit ids) running now, for a
// refresh that must not take its snapshot before they have ended (see
// Request.Barrier). pgoutput publishes a change only if its table was in
// the publication when the change was written, so the rows a transaction
// running when a table joined the publication wrote before that are never
// streamed, even when it commits later: a refresh covers them only if its
// snapshot sees that transaction ended. Creating a slot waits for running
// transactions for the same reason.
func Running(ctx context.Context, q Querier) ([]uint64, error) {
	var xids []uint64
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(x::text::bigint), '{}')
		FROM pg_snapshot_xip(pg_current_snapshot()) x`).Scan(&xids); err != nil {
		return nil, fmt.Errorf("read the running transactions: %w", err)
	}
	return xids, nil
}

// stillRunning returns the oldest of xids the refresh's snapshot does not
// see as ended, or 0 when it sees all of them ended. A commit waiting for a
// synchronous standby is still running for the snapshot, as it should be:
// its rows are not visible yet.
func stillRunning(ctx context.Context, tx pgx.Tx, xids []uint64) (uint64, error) {
	if len(xids) == 0 {
		return 0, nil
	}
	var oldest *uint64
	if err := tx.QueryRow(ctx, `SELECT min(x) FROM unnest($1::bigint[]) x
		WHERE NOT pg_visible_in_snapshot(x::text::xid8, pg_current_snapshot())`, xids).Scan(&oldest); err != nil {
		return 0, fmt.Errorf("check the transactions the refresh waits for: %w", err)
	}
	if oldest == nil {
		return 0, nil
	}
	return *oldest, nil
}
