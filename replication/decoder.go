package replication

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"
)

// relation is what the latest Relation message said of a relation.
type relation struct {
	namespace, name string
	replicaIdentity byte
	columns         []Column
}

// decoder assembles pgoutput messages into transactions.
type decoder struct {
	// selected tells the relations whose row changes become images, and
	// their columns kept (see Stream.SelectImages); nil selects none.
	selected  func(relationOID uint32) []string
	relations map[uint32]relation
	current   *Transaction
	// changeAt maps a relation OID to its entry in current.Changes: a
	// transaction can touch thousands of partitions.
	changeAt map[uint32]int
	// images counts the images current took, of all its relations.
	images int
	// kept is image's buffer of the indexes of the columns a row keeps.
	kept []int
}

func (d *decoder) inTransaction() bool { return d.current != nil }

// decode consumes one pgoutput message and returns the transaction it
// completes, if any.
func (d *decoder) decode(data []byte) (*Transaction, error) {
	// Row changes are nearly all of a busy stream, and routing needs only
	// their relation: INSERT, UPDATE and DELETE start with its OID (protocol
	// version 1), so the tuples of a relation not selected are not decoded
	// at all.
	if len(data) >= 5 {
		switch pglogrepl.MessageType(data[0]) {
		case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
			return nil, d.rowChange(binary.BigEndian.Uint32(data[1:5]), data)
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
		d.images = 0
	case *pglogrepl.CommitMessage:
		tx := d.current
		if tx == nil {
			return nil, fmt.Errorf("commit at %s without begin", m.CommitLSN)
		}
		d.current = nil
		tx.CommitLSN, tx.EndLSN, tx.CommitTime = m.CommitLSN, m.TransactionEndLSN, m.CommitTime
		return tx, nil
	case *pglogrepl.RelationMessage:
		d.describe(m)
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

// describe notes a Relation message. The server sends one before a
// relation's first change and again after its definition changed, which can
// be in the middle of a transaction (DDL): images taken before read the
// relation's rows otherwise than those after, even when the columns they
// keep did not change.
func (d *decoder) describe(m *pglogrepl.RelationMessage) {
	if d.relations == nil {
		d.relations = make(map[uint32]relation)
	}
	rel := relation{namespace: m.Namespace, name: m.RelationName, replicaIdentity: m.ReplicaIdentity, columns: make([]Column, len(m.Columns))}
	for i, c := range m.Columns {
		rel.columns[i] = Column{Name: c.Name, TypeOID: c.DataType, Key: c.Flags&1 != 0}
	}
	previous := d.relations[m.RelationID]
	d.relations[m.RelationID] = rel
	if d.current == nil {
		return
	}
	if i, ok := d.changeAt[m.RelationID]; ok {
		c := &d.current.Changes[i]
		if c.Images != nil && (previous.replicaIdentity != rel.replicaIdentity || !slices.Equal(previous.columns, rel.columns)) {
			loseImages(c, lostColumnsChanged)
		}
	}
}

// rowChange counts an INSERT, UPDATE or DELETE of relation oid, and keeps
// its image when the relation is selected.
func (d *decoder) rowChange(oid uint32, data []byte) error {
	c := d.change(oid, false)
	if c == nil {
		return nil
	}
	var names []string
	if d.selected != nil {
		names = d.selected(oid)
	}
	if len(names) == 0 {
		if c.Images != nil {
			loseImages(c, lostSelectionChanged)
		}
		return nil
	}
	return d.image(c, names, data)
}

// change counts a row change or a TRUNCATE of relation oid in the current
// transaction and returns its entry (valid until the next change), or nil
// outside a transaction.
func (d *decoder) change(oid uint32, truncated bool) *RelationChange {
	tx := d.current
	if tx == nil {
		return nil
	}
	i, ok := d.changeAt[oid]
	if !ok {
		i = len(tx.Changes)
		d.changeAt[oid] = i
		rel := d.relations[oid]
		tx.Changes = append(tx.Changes, RelationChange{OID: oid, Namespace: rel.namespace, Name: rel.name})
	}
	c := &tx.Changes[i]
	if truncated {
		c.Truncated = true
	} else {
		c.Rows++
	}
	return c
}
