// Package publish sends the daemon's refresh and slot events to NATS: it
// queues them so that refreshes, the refresh log and the slot never wait for
// NATS, and publishes them in order from one goroutine, to core NATS or to a
// JetStream stream and its latest-event key-value bucket.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/internal/wait"
	"github.com/mvrefresher/mvrefresher/metrics"
)

// Publishing bounds: events wait in the queue, up to publishQueueSize, while
// NATS has not been reached yet, while a JetStream publish waits for NATS to
// be back, and while nats.go's reconnect buffer (nats.DefaultReconnectBufSize)
// is full. A JetStream publish that NATS, connected all along, did not
// acknowledge is retried up to jsAttempts times.
const (
	publishQueueSize = 10_000
	jsAttempts       = 5
	jsRetryWait      = 500 * time.Millisecond
	publishDrainTime = 5 * time.Second
)

// Publisher sends events from its own goroutine (Run) so that refreshes,
// the refresh log and the slot never wait for NATS. Events keep their order.
type Publisher struct {
	conn *nats.Conn
	// connStatus receives the connection's status changes, to wait for NATS.
	connStatus chan nats.Status
	js         jetstream.JetStream // nil: core NATS
	latest     jetstream.KeyValue  // with js: the latest event of every view
	cfg        config.NATS
	queue      chan outgoing
	logger     *slog.Logger
	metrics    *metrics.Metrics
}

// Open connects to NATS without waiting for the server, since publishing
// never holds up refreshes and nats.go reconnects by itself, and builds the
// publisher. The caller runs Run and, once it has returned, Close.
func Open(cfg config.NATS, m *metrics.Metrics, logger *slog.Logger) (*Publisher, error) {
	conn, err := connect(cfg.URL, logger)
	if err != nil {
		return nil, err
	}
	p := &Publisher{conn: conn, cfg: cfg, queue: make(chan outgoing, publishQueueSize), logger: logger, metrics: m}
	if cfg.JetStream {
		if p.js, err = jetstream.New(conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("set up JetStream: %w", err)
		}
	}
	p.connStatus = conn.StatusChanged(nats.CONNECTED, nats.CLOSED)
	return p, nil
}

// connect connects to the NATS server at url, or starts connecting to it in
// the background while it is down.
func connect(url string, logger *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name("mvrefresher"),
		// Start even while NATS is down: refreshes never wait for it, and
		// the publisher keeps the events until it connects.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ConnectHandler(func(nc *nats.Conn) { logger.Info("connected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", config.RedactURL(url), err)
	}
	if !nc.IsConnected() {
		logger.Warn("NATS is not reachable yet: events wait in memory until it is", "url", config.RedactURL(url))
	}
	return nc, nil
}

// Close closes the connection to NATS.
func (p *Publisher) Close() { p.conn.Close() }

// PublishRefresh queues a refresh event for view schema.name; it never
// blocks.
func (p *Publisher) PublishRefresh(schema, name string, e events.Refresh) {
	p.enqueue(events.Subject(p.cfg.SubjectPrefix, e.Status, schema, name), e, events.MsgID(e), events.LatestKey(schema, name))
}

// PublishSlot queues a slot health event; it never blocks.
func (p *Publisher) PublishSlot(e events.Slot) {
	p.enqueue(events.SlotSubject(p.cfg.SubjectPrefix, e.Slot), e, "", "")
}

// outgoing is a queued event; latestKey ("" for slot events) is its key in
// the latest-event bucket.
type outgoing struct {
	msg       *nats.Msg
	latestKey string
}

func (p *Publisher) enqueue(subject string, payload any, msgID, latestKey string) {
	data, err := json.Marshal(payload)
	if err != nil {
		p.logger.Error("encode event", "subject", subject, "error", err)
		return
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	select {
	case p.queue <- outgoing{msg, latestKey}:
	default:
		p.metrics.EventsDropped.Inc()
		p.logger.Warn("event dropped: NATS has been unreachable for too long", "subject", subject, "queued", len(p.queue))
	}
}

// Run sends queued events until ctx ends, then for a short while more.
func (p *Publisher) Run(ctx context.Context) {
	defer p.conn.RemoveStatusListener(p.connStatus)
	// Until nats.go has met a server, it refuses every message with a header
	// (it cannot know yet that the server takes them), so the events wait in
	// the queue for the first connection.
	if !p.awaitConnection(ctx) {
		p.drain()
		return
	}
	if p.js != nil {
		p.ensureStream(ctx)
	}
	for {
		select {
		case out := <-p.queue:
			p.send(ctx, out)
		case <-ctx.Done():
			p.drain()
			return
		}
	}
}

// drain sends what is queued at stop, giving NATS publishDrainTime to take
// it; what is left then, or all of it while NATS is away, is dropped: the
// stop does not wait for NATS to come back.
func (p *Publisher) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), publishDrainTime)
	defer cancel()
	if p.conn.IsConnected() {
		for len(p.queue) > 0 && ctx.Err() == nil {
			p.send(ctx, <-p.queue)
		}
		if err := p.conn.FlushWithContext(ctx); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.logger.Warn("flush events at stop", "error", err)
		}
	}
	if left := len(p.queue); left > 0 {
		p.metrics.EventsDropped.Add(float64(left))
		p.logger.Warn("events dropped at stop: NATS did not take them in time", "events", left, "waited", publishDrainTime)
	}
}

// awaitConnection waits until the connection to NATS is up, and reports
// false when ctx ends first or the connection is closed.
func (p *Publisher) awaitConnection(ctx context.Context) bool {
	for !p.conn.IsConnected() {
		if p.conn.IsClosed() {
			return false
		}
		select {
		case <-p.connStatus:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (p *Publisher) send(ctx context.Context, out outgoing) {
	if p.js == nil {
		p.sendCore(ctx, out.msg)
		return
	}
	p.sendJetStream(ctx, out)
}

// sendCore hands msg to nats.go, which keeps it in its reconnect buffer
// while it reconnects; once that buffer is full, msg waits here for the
// connection to be back, and later events wait in the queue.
func (p *Publisher) sendCore(ctx context.Context, msg *nats.Msg) {
	for {
		err := p.conn.PublishMsg(msg)
		if errors.Is(err, nats.ErrReconnectBufExceeded) && p.awaitConnection(ctx) {
			continue
		}
		if err != nil {
			p.metrics.EventsDropped.Inc()
			p.logger.Warn("event dropped", "subject", msg.Subject, "error", err)
		}
		return
	}
}

// sendJetStream publishes out until the stream acknowledges it. A lost
// connection is waited out without counting as an attempt: only the
// attempts made while connected all along count towards jsAttempts. The
// Nats-Msg-Id makes a retry of an event the stream did store a duplicate
// that it drops.
func (p *Publisher) sendJetStream(ctx context.Context, out outgoing) {
	msg := out.msg
	for attempt := 0; ; {
		if !p.awaitConnection(ctx) {
			p.metrics.EventsDropped.Inc()
			p.logger.Warn("event dropped: NATS was not back in time", "subject", msg.Subject)
			return
		}
		reconnects := p.conn.Stats().Reconnects
		_, err := p.js.PublishMsg(ctx, msg)
		if err == nil {
			if out.latestKey != "" && p.latest != nil {
				if _, err := p.latest.Put(ctx, out.latestKey, msg.Data); err != nil {
					p.logger.Warn("record the latest event", "key", out.latestKey, "error", err)
				}
			}
			return
		}
		if p.conn.IsConnected() && p.conn.Stats().Reconnects == reconnects {
			attempt++
		}
		if attempt == jsAttempts || ctx.Err() != nil {
			p.metrics.EventsDropped.Inc()
			p.logger.Warn("event dropped: JetStream did not acknowledge it", "subject", msg.Subject, "attempts", attempt, "error", err)
			return
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			p.ensureStream(ctx)
		}
		if !wait.For(ctx, jsRetryWait*time.Duration(attempt)) {
			p.metrics.EventsDropped.Inc()
			p.logger.Warn("event dropped: stopped before JetStream acknowledged it", "subject", msg.Subject, "error", err)
			return
		}
	}
}

// ensureStream creates the stream for the subject prefix when it is missing,
// retrying while NATS is unreachable.
func (p *Publisher) ensureStream(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		_, err := p.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:       p.cfg.Stream,
			Subjects:   []string{p.cfg.SubjectPrefix + ".>"},
			Duplicates: 10 * time.Minute, // a replay after a restart is a duplicate
		})
		if err == nil {
			p.latest, err = p.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      events.LatestBucket(p.cfg.Stream),
				Description: "the latest mvrefresher event of every view",
			})
		}
		if err == nil {
			return
		}
		if attempt == 1 {
			p.logger.Warn("create JetStream stream: retrying", "stream", p.cfg.Stream, "error", err)
		}
		if !wait.For(ctx, min(time.Duration(attempt)*time.Second, 30*time.Second)) {
			return
		}
	}
}
