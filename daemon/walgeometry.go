package daemon

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// walGeometry is the server's WAL page and segment size, fixed when the
// cluster was created (a physical standby has its primary's).
type walGeometry struct {
	blockSize, segmentSize uint64
}

func readWALGeometry(ctx context.Context, pool *pgxpool.Pool) (walGeometry, error) {
	var g walGeometry
	err := pool.QueryRow(ctx, `SELECT current_setting('wal_block_size')::bigint,
		pg_size_bytes(current_setting('wal_segment_size'))`).Scan(&g.blockSize, &g.segmentSize)
	if err != nil {
		return g, fmt.Errorf("read the WAL page and segment size: %w", err)
	}
	return g, nil
}

// recordEnd moves an insert position (pg_current_wal_lsn,
// pg_current_wal_insert_lsn) just past a page header, nothing written on the
// page yet, back to the page's start, where the last record ended and where
// the stream and a standby's replay stop until more WAL comes. No record
// ends inside a header. Without a geometry (zero), insert is returned as is.
func (g walGeometry) recordEnd(insert pglogrepl.LSN) pglogrepl.LSN {
	const shortHeader, longHeader = 24, 40 // SizeOfXLogShortPHD, SizeOfXLogLongPHD (a segment's first page)
	switch {
	case g.segmentSize != 0 && uint64(insert)%g.segmentSize == longHeader:
		return insert - longHeader
	case g.blockSize != 0 && uint64(insert)%g.blockSize == shortHeader:
		return insert - shortHeader
	}
	return insert
}
