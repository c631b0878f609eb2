package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
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
	var pub *publisher
	if d.cfg.NATS.URL != "" {
		nc, err := d.connectNATS()
		if err != nil {
			return err
		}
		defer nc.Close()
		if pub, err = newPublisher(nc, d.cfg.NATS, d.metrics, d.logger.With("component", "nats")); err != nil {
			return err
		}
		pubCtx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
		published := make(chan struct{})
		go func() { pub.run(pubCtx); close(published) }()
		defer func() { stopPublishing(); <-published }()
	}
	attempt := 0
	standby := false
	for {
		started := time.Now()
		err := d.runOnce(ctx, pub)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped without an error") // cannot happen: runOnce returns nil only when ctx ends
		}
		var wait time.Duration
		switch {
		case errors.Is(err, replication.ErrSlotInUse):
			if !standby {
				d.logger.Warn("standby: the replication slot is active in another instance; taking over when it is released", "slot", d.cfg.Slot)
			}
			standby, attempt, wait = true, 0, standbyRetry
		case errors.Is(err, replication.ErrPublicationMissing):
			if d.cfg.OnSlotLost != config.OnSlotLostRecreate {
				return fmt.Errorf("%w: the publication %q was dropped while the slot still needed it, and the slot cannot decode past that point; set on_slot_lost: recreate, or drop the slot (SELECT pg_drop_replication_slot('%s')) and start again: every view is then refreshed once",
					err, d.cfg.Publication, d.cfg.Slot)
			}
			d.logger.Warn("the stream failed on WAL written while the publication was dropped", "error", err)
			d.slotUndecodable = true
			attempt, wait = 0, 0
		case transient(err):
			if standby {
				standby = false
			}
			if time.Since(started) > stableDuration {
				attempt = 0
			}
			attempt++
			wait = backoff(attempt)
			d.logger.Warn("connection lost: reconnecting", "attempt", attempt, "in", wait.Round(time.Millisecond), "error", err)
		default:
			return err
		}
		d.standby.Store(standby)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

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
		errors.Is(err, errServerGoingAway) || errors.Is(err, refresher.ErrRefreshRunning) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "57P"), // admin/crash shutdown, cannot connect now
			strings.HasPrefix(pgErr.Code, "53"),  // too many connections, out of resources
			pgErr.Code == "42710",                // two instances created the slot at once
			pgErr.Code == "55P03",                // lock timeout: the publication's table is busy
			pgErr.Code == "55000":                // the slot was invalidated while streaming: the next attempt sees wal_status lost
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed")
}
