package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// rowTuples is an INSERT, UPDATE or DELETE message, its tuples still in the
// message's buffer.
type rowTuples struct {
	kind, oldKind byte
	old, new      *pglogrepl.TupleData
}

// fits tells whether the row's tuples have the relation's column count.
func (r rowTuples) fits(columns int) bool {
	return (r.old == nil || len(r.old.Columns) == columns) && (r.new == nil || len(r.new.Columns) == columns)
}

// parseRowChange decodes an INSERT, UPDATE or DELETE message.
func parseRowChange(data []byte) (rowTuples, error) {
	// pglogrepl allocates every value's stated length before it reads the
	// value: check the lengths against the message first.
	if err := checkRowChange(data); err != nil {
		return rowTuples{}, err
	}
	msg, err := parse(data)
	if err != nil {
		return rowTuples{}, err
	}
	var r rowTuples
	switch m := msg.(type) {
	case *pglogrepl.InsertMessage:
		r.kind, r.new = 'I', m.Tuple
	case *pglogrepl.UpdateMessage:
		r.kind, r.oldKind, r.old, r.new = 'U', m.OldTupleType, m.OldTuple, m.NewTuple
	case *pglogrepl.DeleteMessage:
		r.kind, r.oldKind, r.old = 'D', m.OldTupleType, m.OldTuple
	default:
		return rowTuples{}, fmt.Errorf("expected a row change, got %T", msg)
	}
	for _, t := range []*pglogrepl.TupleData{r.old, r.new} {
		if err := checkTextValues(t); err != nil {
			return rowTuples{}, fmt.Errorf("%c message: %w", r.kind, err)
		}
	}
	return r, nil
}

// checkTextValues checks that every value of a tuple, kept or not, is one
// the stream asked for.
func checkTextValues(t *pglogrepl.TupleData) error {
	if t == nil {
		return nil
	}
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		default:
			// The stream asks for text ('b' needs the binary option).
			return fmt.Errorf("column %d: value of kind %q", i+1, c.DataType)
		}
	}
	return nil
}

// keptValues copies the kept values of a checked tuple out of the message,
// whose buffer the connection reuses.
func keptValues(t *pglogrepl.TupleData, kept []int) []Value {
	if t == nil {
		return nil
	}
	vs := make([]Value, len(kept))
	for i, k := range kept {
		switch c := t.Columns[k]; c.DataType {
		case pglogrepl.TupleDataTypeText:
			if len(c.Data) > MaxImageValueBytes {
				vs[i].Dropped = true
			} else {
				vs[i].Text = string(c.Data)
			}
		case pglogrepl.TupleDataTypeNull:
			vs[i].Null = true
		case pglogrepl.TupleDataTypeToast:
			vs[i].Unchanged = true
		}
	}
	return vs
}

var errShortRowChange = errors.New("message ends inside a tuple")

// checkRowChange checks that the tuples of an INSERT, UPDATE or DELETE
// message fit in it (protocol version 1).
func checkRowChange(data []byte) error {
	if len(data) < 6 {
		return fmt.Errorf("malformed %q message of %d bytes", data[0], len(data))
	}
	kind, rest := data[0], data[5:]
	tuples := 1
	if kind == byte(pglogrepl.MessageTypeUpdate) && (rest[0] == 'K' || rest[0] == 'O') {
		tuples = 2
	}
	for i := range tuples {
		if len(rest) == 0 {
			return fmt.Errorf("malformed %q message: %w", kind, errShortRowChange)
		}
		if i > 0 && rest[0] != 'N' {
			return fmt.Errorf("malformed %q message: %q where the new tuple starts", kind, rest[0])
		}
		var err error
		if rest, err = skipTuple(rest[1:]); err != nil {
			return fmt.Errorf("malformed %q message: %w", kind, err)
		}
	}
	return nil
}

// skipTuple returns what follows the TupleData at the start of b.
func skipTuple(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errShortRowChange
	}
	n := binary.BigEndian.Uint16(b)
	b = b[2:]
	for range n {
		if len(b) == 0 {
			return nil, errShortRowChange
		}
		kind := b[0]
		b = b[1:]
		if kind != pglogrepl.TupleDataTypeText && kind != pglogrepl.TupleDataTypeBinary {
			continue
		}
		if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
			return nil, errShortRowChange
		}
		b = b[4+binary.BigEndian.Uint32(b):]
	}
	return b, nil
}
