package replication

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WALGeometry is the server's WAL page and segment size, fixed when the
// cluster was created (a physical standby has its primary's).
type WALGeometry struct {
	BlockSize, SegmentSize uint64
}

// ReadWALGeometry reads the geometry of the server pool connects to.
func ReadWALGeometry(ctx context.Context, pool *pgxpool.Pool) (WALGeometry, error) {
	var g WALGeometry
	err := pool.QueryRow(ctx, `SELECT current_setting('wal_block_size')::bigint,
		pg_size_bytes(current_setting('wal_segment_size'))`).Scan(&g.BlockSize, &g.SegmentSize)
	if err != nil {
		return g, fmt.Errorf("read the WAL page and segment size: %w", err)
	}
	return g, nil
}

// LastRecordEnd moves an insert position (pg_current_wal_lsn,
// pg_current_wal_insert_lsn) just past a page header, nothing written on the
// page yet, back to the page's start, where the last record ended and where
// the stream and a standby's replay stop until more WAL comes. No record
// ends inside a header. Without a geometry (zero), insert is returned as is.
func (g WALGeometry) LastRecordEnd(insert pglogrepl.LSN) pglogrepl.LSN {
	const shortHeader, longHeader = 24, 40 // SizeOfXLogShortPHD, SizeOfXLogLongPHD (a segment's first page)
	switch {
	case g.SegmentSize != 0 && uint64(insert)%g.SegmentSize == longHeader:
		return insert - longHeader
	case g.BlockSize != 0 && uint64(insert)%g.BlockSize == shortHeader:
		return insert - shortHeader
	}
	return insert
}
