package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrStreamEnded means the server ended the stream (a clean shutdown):
// reconnect.
var ErrStreamEnded = errors.New("the server ended the replication stream")

// ErrServerStopping means the server is shutting down and waits for this
// stream to confirm everything it was sent, which it may not: the stream
// lets go instead, and what it held back stays in the slot.
var ErrServerStopping = errors.New("the server is shutting down and waits for the stream to confirm what it holds back: letting go")

// Read batching (see batchConn): how long a read waits for more of a
// stream that is flowing. Waiting costs a change up to that much latency and
// saves a wake-up, with its system calls and scheduling, per message the
// walsender writes: under pgbench's TPC-B-like load, 2 ms cost the daemon
// about half the CPU of the walsender decoding for it, 20 ms under a fifth.
const (
	MinBatchDelay = 2 * time.Millisecond
	MaxBatchDelay = 20 * time.Millisecond
)

// DefaultStatusInterval is how soon the stream tells the server a new
// position it may confirm, when the server does not ask: soon enough that
// the slot follows finished work closely.
const DefaultStatusInterval = 100 * time.Millisecond

// idleStatusInterval is how often the stream tells the server a position it
// has already sent: a sign of life, as PostgreSQL's own standbys send every
// wal_receiver_status_interval (10 s). Each status wakes the walsender, and
// ten a second cost an idle database CPU for nothing. A server about to time
// the connection out asks for a status, and gets one at once.
const idleStatusInterval = 10 * time.Second

// writeTimeout bounds every write to the server, and Close as a whole: a
// peer that is gone without closing the connection (half-open TCP) must not
// block the stream or its shutdown forever.
const writeTimeout = 5 * time.Second

// Stream is one replication connection streaming one slot.
type Stream struct {
	conn           *pgconn.PgConn
	serverMajor    int
	slot           string
	publication    string
	statusInterval time.Duration
	batchDelay     time.Duration
	logger         *slog.Logger
	// primary is set when the stream decodes on a standby of it (see
	// DecodeOnStandbyOf).
	primary *pgxpool.Pool
	// selectImages chooses the relations whose row changes are decoded,
	// and their columns kept (see SelectImages); nil selects none.
	selectImages func(relationOID uint32) []string

	confirmable forwardLSN    // set by Confirm, read when sending status
	sent        pglogrepl.LSN // last position sent to the server; owned by Run, then Close
	lastSent    time.Time     // when a status was last sent; owned by Run, then Close
	// writeFailed: a write to the server failed, maybe halfway through a
	// message, so nothing more may be sent. Owned by Run, then Close.
	writeFailed bool
	streaming   atomic.Bool
	// stopping tells a server shutting down by its keepalives; owned by Run.
	stopping stopDetector
}

// TextForms are the settings the stream's row values are printed under:
// the walsender prints them in its session's text forms, and these are
// ones every session reads back as the same value, whatever the server's,
// database's or role's defaults (a date in 'SQL, DMY' reads back wrong
// under MDY; floats otherwise lose digits). Whoever passes values on as
// text uses them too.
var TextForms = map[string]string{"DateStyle": "ISO", "IntervalStyle": "postgres", "extra_float_digits": "3"}

// Connect opens a replication connection to the database of databaseURL.
func Connect(ctx context.Context, databaseURL, slot, publication string, logger *slog.Logger) (*Stream, error) {
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "mvrefresher"
	maps.Copy(cfg.RuntimeParams, TextForms)
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newBatchConn(c), nil
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w%s", err, replicationHint(err, cfg.User))
	}
	major, err := strconv.Atoi(strings.SplitN(conn.ParameterStatus("server_version"), ".", 2)[0])
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("open replication connection: server_version %q: %w", conn.ParameterStatus("server_version"), err)
	}
	senderTimeout, err := readSenderTimeout(ctx, conn)
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	return &Stream{
		serverMajor:    major,
		conn:           conn,
		slot:           slot,
		publication:    publication,
		statusInterval: DefaultStatusInterval,
		batchDelay:     MinBatchDelay,
		logger:         logger,
		stopping:       stopDetector{senderTimeout: senderTimeout},
	}, nil
}

// replicationHint says how to let role open a replication connection the
// server refused.
func replicationHint(err error, role string) string {
	role = pgx.Identifier{role}.Sanitize()
	switch sqlState(err) {
	case pgerrcode.InsufficientPrivilege:
		return fmt.Sprintf(" (the role needs the REPLICATION attribute: ALTER ROLE %s REPLICATION)", role)
	case pgerrcode.InvalidAuthorizationSpecification:
		return fmt.Sprintf(" (pg_hba.conf must allow the role %s a connection to this database; a logical replication connection matches the lines of its database, not those of \"replication\")", role)
	case pgerrcode.TooManyConnections:
		return " (no walsender is free: max_wal_senders counts every replication connection, physical standbys' included (pg_stat_replication lists them); raise it in postgresql.conf and restart PostgreSQL)"
	}
	return ""
}

// DecodeOnStandbyOf tells the stream that its server is a physical standby
// of primary (see CheckSource): creating the slot there asks the primary
// for the running-transactions records it waits for.
func (s *Stream) DecodeOnStandbyOf(primary *pgxpool.Pool) { s.primary = primary }

// SetBatchDelay sets how long a read waits for more of a flowing stream
// (MinBatchDelay to MaxBatchDelay); call it before Run.
func (s *Stream) SetBatchDelay(d time.Duration) {
	s.batchDelay = min(max(d, MinBatchDelay), MaxBatchDelay)
}

// Confirm tells the stream that the server may forget everything before lsn.
// It never moves backwards.
func (s *Stream) Confirm(lsn pglogrepl.LSN) { s.confirmable.advance(lsn) }

// Streaming reports whether the stream is receiving from the slot.
func (s *Stream) Streaming() bool { return s.streaming.Load() }

// Run streams from the slot's confirmed position until ctx ends or the
// connection fails. It returns ctx.Err() when ctx ends.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	pubs := strings.ReplaceAll(pgx.Identifier{s.publication}.Sanitize(), "'", "''")
	// LSN 0: the server starts at the slot's confirmed position. Starting
	// anywhere else could skip transactions.
	err := pglogrepl.StartReplication(ctx, s.conn, s.slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pubs + "'", "messages 'true'"},
	})
	if err != nil {
		if sqlState(err) == pgerrcode.ObjectInUse {
			return fmt.Errorf("start replication from slot %q: %w: %w", s.slot, ErrSlotInUse, err)
		}
		return fmt.Errorf("start replication from slot %q: %w", s.slot, err)
	}
	s.streaming.Store(true)
	defer s.streaming.Store(false)

	// One read deadline per status interval instead of a context (and its
	// watcher goroutine and deadline) per message; ctx's end interrupts
	// reads and writes by moving the deadlines into the past.
	nc := s.conn.Conn()
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
		}
		_ = nc.SetDeadline(time.Time{})
	}()
	if bc := findBatchConn(nc); bc != nil {
		bc.setBatching(true, s.batchDelay)
		defer bc.setBatching(false, 0)
	}

	var (
		decoder    = decoder{selected: s.selectImages}
		nextStatus time.Time
	)
	for {
		if now := time.Now(); !now.Before(nextStatus) {
			moved := s.confirmable.load() != s.sent
			if !nextStatus.IsZero() && (moved || now.Sub(s.lastSent) >= idleStatusInterval) {
				if err := s.sendStatus(ctx, now.Add(writeTimeout)); err != nil {
					return err
				}
			}
			nextStatus = now.Add(s.statusInterval)
			if err := nc.SetReadDeadline(nextStatus); err != nil {
				return fmt.Errorf("receive from slot %q: set read deadline: %w", s.slot, err)
			}
			// After the deadline is set: an interruption that came before it
			// was overwritten.
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive from slot %q: %w", s.slot, err)
		}
		switch msg := raw.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(ctx, msg.Data, &decoder, h); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			if pgErr.Code == pgerrcode.UndefinedObject { // pgoutput's "publication does not exist"
				return fmt.Errorf("replication from slot %q: %w: %w", s.slot, ErrPublicationMissing, pgErr)
			}
			return fmt.Errorf("replication from slot %q: %w", s.slot, pgErr)
		case *pgproto3.CommandComplete, *pgproto3.CopyDone:
			// The server ends the stream this way when it shuts down cleanly.
			return fmt.Errorf("replication from slot %q: %w", s.slot, ErrStreamEnded)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return fmt.Errorf("replication from slot %q: unexpected message %T", s.slot, raw)
		}
	}
}

func (s *Stream) handleCopyData(ctx context.Context, data []byte, d *decoder, h Handler) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		if !d.inTransaction() {
			if err := h.Progress(ctx, ka.ServerWALEnd); err != nil {
				return err
			}
		}
		if ka.ReplyRequested {
			if s.serverStopping(ka) {
				return fmt.Errorf("replication from slot %q: %w", s.slot, ErrServerStopping)
			}
			// The server drops a connection that does not answer in time.
			return s.sendStatus(ctx, time.Now().Add(writeTimeout))
		}
	case pglogrepl.XLogDataByteID:
		s.stopping.data()
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		tx, err := d.decode(xld.WALData)
		if err != nil {
			return fmt.Errorf("decode pgoutput at %s: %w", xld.WALStart, err)
		}
		if tx == nil {
			return nil
		}
		return h.Commit(ctx, tx)
	}
	return nil
}

// serverStopping notes a reply-requested keepalive and reports whether the
// server is shutting down while the stream holds back part of what it was
// sent. A fast shutdown waits for a logical walsender until its client has
// confirmed everything; with a refresh pending, which cannot run while the
// server refuses connections (or, decoding on a standby, cannot be
// confirmed once the standby stops replaying), it would wait forever.
func (s *Stream) serverStopping(ka pglogrepl.PrimaryKeepaliveMessage) bool {
	return s.stopping.ping(ka.ServerWALEnd, ka.ServerTime) && s.confirmable.load() < ka.ServerWALEnd
}

// sendStatus tells the server the confirmable position, giving up at
// deadline or when ctx ends.
func (s *Stream) sendStatus(ctx context.Context, deadline time.Time) error {
	lsn := s.confirmable.load()
	if s.writeFailed {
		return fmt.Errorf("confirm %s to slot %q: an earlier write failed", lsn, s.slot)
	}
	if err := s.conn.Conn().SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("confirm %s to slot %q: set write deadline: %w", lsn, s.slot, err)
	}
	// After the deadline is set: Run's interruption cannot be overwritten
	// unseen.
	if err := ctx.Err(); err != nil {
		return err
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
	})
	if err != nil {
		// Unless nothing was written, what the server got may end halfway
		// through the message.
		s.writeFailed = !pgconn.SafeToRetry(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("confirm %s to slot %q: %w", lsn, s.slot, err)
	}
	s.lastSent = time.Now()
	if lsn != s.sent {
		s.logger.Debug("confirmed position", "lsn", lsn.String())
		s.sent = lsn
	}
	return nil
}

// Close confirms the latest position to the server and closes the
// connection, within writeTimeout or ctx, whichever ends first. Call it
// after Run has returned.
func (s *Stream) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if s.conn.IsClosed() {
		return nil
	}
	nc := s.conn.Conn()
	if s.writeFailed {
		// The protocol may be broken halfway through a message: just hang up.
		_ = nc.Close()
		_ = s.conn.Close(ctx)
		return nil
	}
	// Bounds the final status, and pgconn's Terminate after it.
	_ = nc.SetDeadline(deadline)
	var confirmErr error
	if s.confirmable.load() != s.sent {
		confirmErr = s.sendStatus(ctx, deadline)
	}
	return errors.Join(confirmErr, s.conn.Close(ctx))
}
