package replication

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// stoppingPings is how many reply-requested keepalives in a row, at one WAL
// end with no data in between, each sent sooner after the one before than
// an ordinary ping could be, mean the walsender is shutting down.
const stoppingPings = 3

// stopDetector tells a walsender shutting down from one asking for a sign
// of life, by the server's send times of its reply-requested keepalives
// (PostgreSQL's walsender.c).
//
// An ordinary ping (WalSndKeepaliveIfNecessary) is sent only when no ping
// is waiting for its reply, and at least wal_sender_timeout/2 (whole
// milliseconds) after the walsender last read anything from the client.
// The read that ends a ping's wait comes after that ping was sent, so two
// ordinary pings are at least wal_sender_timeout/2 apart by the server's
// own clock, whatever the network did; with wal_sender_timeout 0 there are
// none. A walsender shutting down (WalSndDone) asks again as soon as each
// reply arrives: its pings are a round trip apart. Keepalives closer than
// an ordinary ping could be therefore come from a shutdown, and a false
// positive is impossible for any wal_sender_timeout the walsender had when
// the stream connected (its clock stepping back aside).
//
// Detection misses when a round trip (plus the read batching's delay, at
// most MaxBatchDelay) is not shorter than wal_sender_timeout/2: with a
// timeout of a few tens of milliseconds, or a slow network. The stream then
// answers the pings as usual and the shutdown waits until the attempt ends
// for another reason (a refresh failing against the stopping server, the
// connection breaking; see Guarantees in docs/how-it-works.md). A reload that
// lowers wal_sender_timeout while the stream runs can make ordinary pings
// look like a shutdown's once: the stream lets go, reconnects and reads the
// new value; nothing is lost.
type stopDetector struct {
	// senderTimeout is the walsender's wal_sender_timeout; 0 turns its
	// ordinary pings off.
	senderTimeout time.Duration
	pings         int
	end           pglogrepl.LSN
	last          time.Time // server time of the last reply-requested keepalive
}

// data notes that the server sent data: the pings in a row start again.
func (d *stopDetector) data() { d.pings = 0 }

// ping notes a reply-requested keepalive at walEnd, sent at serverTime, and
// reports whether it makes stoppingPings in a row that no ordinary ping
// could be.
func (d *stopDetector) ping(walEnd pglogrepl.LSN, serverTime time.Time) bool {
	if d.pings == 0 || walEnd != d.end || !d.sooner(serverTime.Sub(d.last)) {
		d.pings = 0
	}
	d.pings++
	d.end, d.last = walEnd, serverTime
	return d.pings >= stoppingPings
}

// sooner reports whether a ping gap after the one before is shorter than
// any between two ordinary pings.
func (d *stopDetector) sooner(gap time.Duration) bool {
	if d.senderTimeout == 0 {
		return true
	}
	// The walsender halves the timeout in whole milliseconds.
	ordinary := time.Duration(d.senderTimeout.Milliseconds()/2) * time.Millisecond
	return gap < ordinary
}

// readSenderTimeout reads wal_sender_timeout as the walsender of conn has
// it: a role's, a database's or the connection's own setting can differ
// from the server's.
func readSenderTimeout(ctx context.Context, conn *pgconn.PgConn) (time.Duration, error) {
	results, err := conn.Exec(ctx, "SELECT setting FROM pg_settings WHERE name = 'wal_sender_timeout'").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("read wal_sender_timeout: %w", err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return 0, fmt.Errorf("read wal_sender_timeout: unexpected result %v", results)
	}
	ms, err := strconv.ParseInt(string(results[0].Rows[0][0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read wal_sender_timeout: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
