package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// MaxImagesPerChange bounds the row images one transaction keeps of one
// relation: a bulk load would otherwise hold the whole load in memory until
// its commit. Past it the relation's images are dropped (ImagesLost) and its
// rows only counted, as for a relation not selected.
const MaxImagesPerChange = 10000

// RowImage is one row change of a relation whose images were asked for.
type RowImage struct {
	Kind byte // 'I' insert, 'U' update, 'D' delete
	// OldKind is 'K' when Old holds only the replica identity's columns (the others are null),
	// 'O' when Old is the whole old row (REPLICA IDENTITY FULL), 0 when the server sent no old row
	// (an UPDATE that changed no replica identity column, under DEFAULT or USING INDEX).
	OldKind  byte
	Old, New []Value // in the order of RelationChange.Columns; nil when absent
}

// Value is one column of a row in PostgreSQL's text form.
type Value struct {
	Text      string
	Null      bool
	Unchanged bool // an unchanged TOASTed value the server did not send ('u')
}

// Column is a column of a relation as its Relation message describes it.
type Column struct {
	Name    string
	TypeOID uint32
}

// SelectImages chooses the relations whose row changes the stream hands
// over in full (RelationChange.Images) rather than only counts; call it
// before Run. nil, the default, selects none. selected is called on the
// stream's goroutine for every row change, and its answer is not cached: it
// may change, with the catalog, between calls.
func (s *Stream) SelectImages(selected func(relationOID uint32) bool) { s.selectImages = selected }

// Why a selected relation's Images do not hold every row change of a
// transaction.
const (
	lostOverCap          = "more than MaxImagesPerChange rows changed"
	lostColumnsChanged   = "the relation's columns changed in the middle of the transaction"
	lostSelectionChanged = "the relation's selection changed in the middle of the transaction"
	lostNoRelation       = "no Relation message described the relation"
	lostColumnCount      = "a row's column count differs from the relation's"
)

// loseImages gives up on c's images for the rest of the transaction; the
// first reason stays.
func loseImages(c *RelationChange, why string) {
	c.Images = nil
	if c.ImagesLost == "" {
		c.ImagesLost = why
	}
}

// image records the row change data of a selected relation in c, whose Rows
// already counts it.
func (d *decoder) image(c *RelationChange, data []byte) error {
	if c.ImagesLost != "" {
		return nil
	}
	if len(c.Images) != c.Rows-1 {
		loseImages(c, lostSelectionChanged)
		return nil
	}
	if c.Rows > MaxImagesPerChange {
		loseImages(c, lostOverCap)
		return nil
	}
	img, err := rowImage(data)
	if err != nil {
		return err
	}
	rel, ok := d.relations[c.OID]
	if !ok {
		loseImages(c, lostNoRelation)
		return nil
	}
	if c.Images == nil {
		c.Columns = rel.columns
	}
	if (img.Old != nil && len(img.Old) != len(c.Columns)) || (img.New != nil && len(img.New) != len(c.Columns)) {
		loseImages(c, lostColumnCount)
		return nil
	}
	c.Images = append(c.Images, img)
	return nil
}

// rowImage decodes an INSERT, UPDATE or DELETE message.
func rowImage(data []byte) (RowImage, error) {
	// pglogrepl allocates every value's stated length before it reads the
	// value: check the lengths against the message first.
	if err := checkRowChange(data); err != nil {
		return RowImage{}, err
	}
	msg, err := parse(data)
	if err != nil {
		return RowImage{}, err
	}
	var img RowImage
	switch m := msg.(type) {
	case *pglogrepl.InsertMessage:
		img.Kind = 'I'
		img.New, err = values(m.Tuple)
	case *pglogrepl.UpdateMessage:
		img.Kind, img.OldKind = 'U', m.OldTupleType
		if img.Old, err = values(m.OldTuple); err == nil {
			img.New, err = values(m.NewTuple)
		}
	case *pglogrepl.DeleteMessage:
		img.Kind, img.OldKind = 'D', m.OldTupleType
		img.Old, err = values(m.OldTuple)
	default:
		return RowImage{}, fmt.Errorf("expected a row change, got %T", msg)
	}
	if err != nil {
		return RowImage{}, fmt.Errorf("%c message: %w", img.Kind, err)
	}
	return img, nil
}

// values copies a tuple's values out of the message, whose buffer the
// connection reuses.
func values(t *pglogrepl.TupleData) ([]Value, error) {
	if t == nil {
		return nil, nil
	}
	vs := make([]Value, len(t.Columns))
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeText:
			vs[i].Text = string(c.Data)
		case pglogrepl.TupleDataTypeNull:
			vs[i].Null = true
		case pglogrepl.TupleDataTypeToast:
			vs[i].Unchanged = true
		default:
			// The stream asks for text ('b' needs the binary option).
			return nil, fmt.Errorf("column %d: value of kind %q", i+1, c.DataType)
		}
	}
	return vs, nil
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
