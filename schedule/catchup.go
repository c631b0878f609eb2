package schedule

import (
	"context"
	"log/slog"
	"time"
)

// catchUpLag is how old a transaction may be when it arrives before the
// stream counts as catching up on a backlog; while it does, views wait for
// it to catch up (or for their max wait) instead of refreshing in between.
const catchUpLag = time.Second

// catchUpIdle ends catching up when nothing arrives for this long, should
// the server's keepalive not come.
const catchUpIdle = time.Second

// catchUp is whether the stream is catching up on a backlog.
type catchUp struct {
	behind bool
	since  time.Time // behind since
	// lastReceived is when the stream last handed something over.
	lastReceived time.Time
}

// idleAt is when catching up ends for want of anything arriving; false
// when the stream is not behind.
func (c *catchUp) idleAt() (time.Time, bool) {
	return c.lastReceived.Add(catchUpIdle), c.behind
}

// drainInbox takes what else the stream has queued, so that a backlog is
// routed in batches instead of rescheduling every view after every
// transaction.
func (s *Scheduler) drainInbox() {
	for range cap(s.inbox) {
		select {
		case item := <-s.inbox:
			s.receive(item)
		default:
			return
		}
	}
}

// receive takes what the stream handed over, received at s.now.
func (s *Scheduler) receive(item streamItem) {
	received := s.now
	s.catchUp.lastReceived = received
	if tx := item.tx; tx != nil {
		s.route(tx, item.newRels)
		s.watermark.Seen(tx.EndLSN)
		lag := received.Sub(tx.CommitTime)
		s.setBehind(lag > catchUpLag)
		if !s.catchUp.behind && !tx.CommitTime.IsZero() {
			s.planner.lag.observe(max(lag, 0), received)
		}
		return
	}
	s.watermark.Seen(item.progress)
	s.setBehind(false)
}

// setBehind notes whether the stream is catching up on a backlog: a
// refresh in the middle of one is stale at once and takes CPU from the
// server sending the rest.
func (s *Scheduler) setBehind(behind bool) {
	if behind == s.catchUp.behind {
		return
	}
	s.catchUp.behind = behind
	s.debouncer.SetBehind(behind)
	now := s.now
	if behind {
		s.catchUp.since = now
		s.logger.Debug("catching up on a backlog: views wait for the stream to catch up, or for their max_wait")
		return
	}
	// A short lag comes and goes; only a real backlog is worth a line.
	level := slog.LevelDebug
	if now.Sub(s.catchUp.since) >= 5*time.Second {
		level = slog.LevelInfo
	}
	s.logger.Log(context.Background(), level, "caught up on a backlog", "behind_for", now.Sub(s.catchUp.since).Round(time.Millisecond).String())
}
