package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/publish"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// Reconnect backoff: capped exponential with jitter. A standby retries at a
// steady pace so that it takes over within seconds.
const (
	reconnectBase  = 500 * time.Millisecond
	reconnectMax   = 30 * time.Second
	standbyRetry   = 2 * time.Second
	stableDuration = time.Minute // streaming this long resets the backoff
)

// Run runs until ctx ends, returning nil after a graceful stop. Connection
// losses, server restarts and a slot held by another instance are survived
// by reconnecting with backoff (or waiting as a standby); configuration and
// privilege problems are returned.
func (d *Daemon) Run(ctx context.Context) error {
	var sink eventSink = noEvents{}
	if d.cfg.NATS.URL != "" {
		pub, err := publish.Open(d.cfg.NATS, d.metrics, d.logger.With("component", "nats"))
		if err != nil {
			return err
		}
		defer pub.Close()
		sink = pub
		pubCtx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
		published := make(chan struct{})
		go func() { pub.Run(pubCtx); close(published) }()
		defer func() { stopPublishing(); <-published }()
	}
	attempt := 0
	standby := false
	for {
		started := time.Now()
		err := d.runOnce(ctx, sink)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped without an error") // cannot happen: runOnce returns nil only when ctx ends
		}
		var pause time.Duration
		switch {
		case errors.Is(err, replication.ErrSlotInUse):
			if !standby {
				d.logger.Warn("standby: the replication slot is active in another instance; taking over when it is released", "slot", d.cfg.Slot)
			}
			standby, attempt, pause = true, 0, standbyRetry
		case errors.Is(err, replication.ErrPublicationMissing):
			if d.cfg.OnSlotLost != config.OnSlotLostRecreate {
				return fmt.Errorf("%w: the publication %q was dropped while the slot still needed it, and the slot cannot decode past that point; set on_slot_lost: recreate, or drop the slot (SELECT pg_drop_replication_slot('%s')) and start again: every view is then refreshed once",
					err, d.cfg.Publication, d.cfg.Slot)
			}
			d.logger.Warn("the stream failed on WAL written while the publication was dropped", "error", err)
			d.slotUndecodable = true
			attempt, pause = 0, 0
		case errors.Is(err, replication.ErrNoSlotRoom):
			// As the server's own refusal was before the check: a slot may
			// be dropped soon, and the daemon should start then.
			standby = false
			attempt++
			pause = backoff(attempt)
			d.logger.Error("waiting for room for the replication slot", "attempt", attempt, "in", pause.Round(time.Millisecond), "error", err)
		case transient(err):
			if standby {
				standby = false
			}
			if time.Since(started) > stableDuration {
				attempt = 0
			}
			attempt++
			pause = backoff(attempt)
			d.logger.Warn("connection lost: reconnecting", "attempt", attempt, "in", pause.Round(time.Millisecond), "error", err)
		default:
			return err
		}
		d.standby.Store(standby)
		if !wait.For(ctx, pause) {
			return nil
		}
	}
}

// eventSink takes the events the daemon publishes: a publish.Publisher, or
// noEvents when NATS is off.
type eventSink interface {
	PublishRefresh(schema, name string, e events.Refresh)
	PublishSlot(e events.Slot)
}

// noEvents drops every event: publishing is disabled (nats.url "").
type noEvents struct{}

func (noEvents) PublishRefresh(string, string, events.Refresh) {}
func (noEvents) PublishSlot(events.Slot)                       {}

func backoff(attempt int) time.Duration {
	d := reconnectMax
	if attempt < 16 {
		d = min(reconnectBase<<(attempt-1), reconnectMax)
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}

// transient reports whether an error is a lost or refused connection or a
// server that is restarting, as opposed to a problem a restart cannot fix.
func transient(err error) bool {
	if errors.Is(err, replication.ErrStreamEnded) || errors.Is(err, replication.ErrServerStopping) ||
		errors.Is(err, schedule.ErrServerGoingAway) || errors.Is(err, replication.ErrStandbyPromoted) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgerrcode.IsConnectionException(pgErr.Code),
			pgerrcode.IsOperatorIntervention(pgErr.Code) && pgErr.Code != pgerrcode.QueryCanceled, // admin/crash shutdown, cannot connect now
			pgerrcode.IsInsufficientResources(pgErr.Code),                                         // too many connections, out of memory
			pgErr.Code == pgerrcode.DuplicateObject,                                               // two instances created the slot at once
			pgErr.Code == pgerrcode.SerializationFailure,                                          // a recovery conflict on the standby the stream decodes on
			pgErr.Code == pgerrcode.LockNotAvailable,                                              // lock timeout: the publication's table is busy
			pgErr.Code == pgerrcode.ObjectNotInPrerequisiteState:                                  // the slot was invalidated while streaming: the next attempt sees it lost
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed)
}
