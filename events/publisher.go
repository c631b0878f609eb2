package events

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Publisher sends refresh events on a NATS connection it does not own.
type Publisher struct {
	conn   *nats.Conn
	prefix string
}

// NewPublisher publishes on conn under the subject prefix.
func NewPublisher(conn *nats.Conn, prefix string) *Publisher {
	return &Publisher{conn: conn, prefix: prefix}
}

// Publish sends e for the view schema.name. It does not wait for the server:
// nats.go buffers while reconnecting, and a refresh must never wait for NATS.
func (p *Publisher) Publish(schema, name string, e Refresh) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event for %s: %w", e.View, err)
	}
	msg := nats.NewMsg(Subject(p.prefix, e.Status, schema, name))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, MsgID(e.View, e.LSN))
	if err := p.conn.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish event for %s: %w", e.View, err)
	}
	return nil
}
