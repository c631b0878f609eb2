package replication

import "slices"

// MaxImagesPerTransaction bounds the row images one transaction takes, of
// all its relations together (those a relation lost since still count): a
// bulk load, or one that touches hundreds of partitions, would otherwise
// hold the whole load in memory until its commit. The change whose image would pass it loses its images
// (ImagesLost), as does every later change of a selected relation in the
// transaction: their rows are only counted, as for a relation not selected.
const MaxImagesPerTransaction = 10000

// MaxImageValueBytes bounds a value an image keeps: a longer one (a large
// text or jsonb) is kept as Dropped, so that the images of a transaction
// hold at most MaxImagesPerTransaction times this much per column.
const MaxImageValueBytes = 1024

// RowImage is one row change of a relation whose images were asked for.
type RowImage struct {
	Kind byte // 'I' insert, 'U' update, 'D' delete
	// OldKind is 'K' when Old holds only the replica identity's columns (the
	// others are null; RelationChange.Columns tells which are Key), 'O' when
	// Old is the whole old row (REPLICA IDENTITY FULL), 0 when the server sent
	// no old row (an UPDATE that changed no replica identity column, under
	// DEFAULT or USING INDEX).
	OldKind  byte
	Old, New []Value // in the order of RelationChange.Columns; nil when absent
}

// Value is one column of a row in PostgreSQL's text form.
type Value struct {
	Text      string
	Null      bool
	Unchanged bool // an unchanged TOASTed value the server did not send ('u')
	Dropped   bool // longer than MaxImageValueBytes: not kept
}

// Column is a column of a relation as its Relation message describes it.
type Column struct {
	Name    string
	TypeOID uint32
	// Key: the column is part of the replica identity, so an old row of kind
	// 'K' carries it (every column is, under REPLICA IDENTITY FULL). It is
	// what the server wrote the change with, which the catalog may no longer
	// say.
	Key bool
}

// SelectImages chooses the relations whose row changes the stream hands
// over in full (RelationChange.Images) rather than only counts, and which of
// their columns the images keep; call it before Run. selected returns the
// names of the columns to keep, nil or empty for a relation not selected
// (names the relation does not have are ignored); nil, the default, selects
// none. selected is called on the stream's goroutine for every row change,
// and its answer is not cached: it may change, with the catalog, between
// calls.
func (s *Stream) SelectImages(selected func(relationOID uint32) []string) {
	s.selectImages = selected
}

// Why a selected relation's Images do not hold every row change of a
// transaction.
const (
	lostOverCap          = "more than MaxImagesPerTransaction rows changed in the transaction"
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

// image records the row change data of a relation selected with the columns
// names in c, whose Rows already counts it.
func (d *decoder) image(c *RelationChange, names []string, data []byte) error {
	if c.ImagesLost != "" {
		return nil
	}
	if len(c.Images) != c.Rows-1 {
		loseImages(c, lostSelectionChanged)
		return nil
	}
	if d.images >= MaxImagesPerTransaction {
		loseImages(c, lostOverCap)
		return nil
	}
	row, err := parseRowChange(data)
	if err != nil {
		return err
	}
	rel, ok := d.relations[c.OID]
	if !ok {
		loseImages(c, lostNoRelation)
		return nil
	}
	if !row.fits(len(rel.columns)) {
		loseImages(c, lostColumnCount)
		return nil
	}
	d.kept = keptColumns(d.kept[:0], rel.columns, names)
	if c.Images == nil {
		c.Columns = make([]Column, len(d.kept))
		for i, k := range d.kept {
			c.Columns[i] = rel.columns[k]
		}
		c.ReplicaIdentity = rel.replicaIdentity
	} else if !sameKept(c.Columns, rel.columns, d.kept) {
		loseImages(c, lostSelectionChanged)
		return nil
	}
	c.Images = append(c.Images, RowImage{
		Kind: row.kind, OldKind: row.oldKind,
		Old: keptValues(row.old, d.kept), New: keptValues(row.new, d.kept),
	})
	d.images++
	return nil
}

// keptColumns appends to kept the indexes, in the relation's order, of the
// columns named in names.
func keptColumns(kept []int, columns []Column, names []string) []int {
	for i, c := range columns {
		if slices.Contains(names, c.Name) {
			kept = append(kept, i)
		}
	}
	return kept
}

// sameKept tells whether the columns kept of the relation's columns are
// those the images so far kept. The relation's columns are the same (a
// change of them loses the images), and a relation's column names are
// unique: the names tell.
func sameKept(imaged, columns []Column, kept []int) bool {
	if len(imaged) != len(kept) {
		return false
	}
	for i, k := range kept {
		if imaged[i].Name != columns[k].Name {
			return false
		}
	}
	return true
}
