package replication

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pglogrepl"
)

type relationName struct{ namespace, name string }

// decoder assembles pgoutput messages into transactions.
type decoder struct {
	relations map[uint32]relationName
	current   *Transaction
	// changeAt maps a relation OID to its entry in current.Changes: a
	// transaction can touch thousands of partitions.
	changeAt map[uint32]int
}

func (d *decoder) inTransaction() bool { return d.current != nil }

// decode consumes one pgoutput message and returns the transaction it
// completes, if any.
func (d *decoder) decode(data []byte) (*Transaction, error) {
	// Row changes are nearly all of a busy stream, and routing needs only
	// their relation: INSERT, UPDATE and DELETE start with its OID (protocol
	// version 1), so their tuples are not decoded at all.
	if len(data) >= 5 {
		switch pglogrepl.MessageType(data[0]) {
		case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
			d.change(binary.BigEndian.Uint32(data[1:5]), false)
			return nil, nil
		}
	}
	// A TRUNCATE states how many relations follow, and pglogrepl allocates
	// that many before it reads them: check the count against the length.
	if len(data) >= 5 && pglogrepl.MessageType(data[0]) == pglogrepl.MessageTypeTruncate {
		if n := uint64(binary.BigEndian.Uint32(data[1:5])); 6+4*n > uint64(len(data)) {
			return nil, fmt.Errorf("malformed TRUNCATE message: %d relations in %d bytes", n, len(data))
		}
	}
	msg, err := parse(data)
	if err != nil {
		return nil, err
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		d.current = &Transaction{Xid: m.Xid, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime}
		if d.changeAt == nil {
			d.changeAt = make(map[uint32]int)
		}
		clear(d.changeAt)
	case *pglogrepl.CommitMessage:
		tx := d.current
		if tx == nil {
			return nil, fmt.Errorf("commit at %s without begin", m.CommitLSN)
		}
		d.current = nil
		tx.CommitLSN, tx.EndLSN, tx.CommitTime = m.CommitLSN, m.TransactionEndLSN, m.CommitTime
		return tx, nil
	case *pglogrepl.RelationMessage:
		if d.relations == nil {
			d.relations = make(map[uint32]relationName)
		}
		d.relations[m.RelationID] = relationName{m.Namespace, m.RelationName}
	case *pglogrepl.TruncateMessage:
		for _, oid := range m.RelationIDs {
			d.change(oid, true)
		}
	case *pglogrepl.LogicalDecodingMessage:
		// Non-transactional messages arrive outside any transaction and are
		// not ordered with the data; only transactional ones are requests.
		if m.Transactional && m.Prefix == MessagePrefix && d.current != nil {
			d.current.Requests = append(d.current.Requests, string(m.Content))
		}
	}
	return nil, nil
}

// parse is pglogrepl.Parse, which indexes past the end of a short or
// empty message (it checks no lengths): a malformed message is an error,
// never a crash of the daemon.
func parse(data []byte) (msg pglogrepl.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed pgoutput message of %d bytes: %v", len(data), r)
		}
	}()
	return pglogrepl.Parse(data)
}

func (d *decoder) change(oid uint32, truncated bool) {
	tx := d.current
	if tx == nil {
		return
	}
	if i, ok := d.changeAt[oid]; ok {
		if truncated {
			tx.Changes[i].Truncated = true
		} else {
			tx.Changes[i].Rows++
		}
		return
	}
	d.changeAt[oid] = len(tx.Changes)
	rel := d.relations[oid]
	c := RelationChange{OID: oid, Namespace: rel.namespace, Name: rel.name, Truncated: truncated}
	if !truncated {
		c.Rows = 1
	}
	tx.Changes = append(tx.Changes, c)
}
