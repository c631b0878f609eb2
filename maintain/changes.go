package maintain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/replication"
)

// MaxChangedRows is how many changed rows a view's pending maintenance
// keeps: past it, the view is recomputed whole (still writing only the rows
// that differ), which costs about as much as following that many rows.
const MaxChangedRows = 10000

// row is what a changed row carries of its source's columns
// (Source.ImageColumns, in that order); nil is SQL NULL.
type row []*string

// changedRow is a changed row, and whether the view's filter on its source
// may judge it (filtered): its filter columns are those of one version of
// the row. A row standing for a version the WAL did not carry in full (the
// old one of an UPDATE that sent no old row, an old row without the
// filter's columns, an unchanged TOASTed value) names its view rows
// whatever the filter says.
type changedRow struct {
	values   row
	filtered bool
}

// Changes is what one maintenance of a view must follow: the changed rows
// of each source, or why it must recompute the view whole. The zero value
// follows nothing.
type Changes struct {
	full string
	rows map[string][]changedRow // by source name, each row once
	seen map[string]bool         // source and row, encoded
	n    int
}

// Full returns why the maintenance recomputes the whole view, "" when it
// follows the changed rows.
func (c *Changes) Full() string { return c.full }

// Rows counts the changed rows kept.
func (c *Changes) Rows() int { return c.n }

// Escalate makes the maintenance recompute the whole view, for reason
// (the first one given stays).
func (c *Changes) Escalate(reason string) {
	if reason == "" {
		reason = "a refresh no changed row asked for" // "" would mean incremental
	}
	if c.full == "" {
		c.full = reason
	}
	c.rows, c.seen, c.n = nil, nil, 0
}

// Merge adds what o follows to c.
func (c *Changes) Merge(o *Changes) {
	if o == nil {
		return
	}
	if o.full != "" {
		c.Escalate(o.full)
		return
	}
	for source, rows := range o.rows {
		for _, r := range rows {
			c.add(source, r)
		}
	}
}

func (c *Changes) add(source string, r changedRow) {
	if c.full != "" {
		return
	}
	id := encodeRow(source, r)
	if c.seen[id] {
		return
	}
	if c.n >= MaxChangedRows {
		c.Escalate(fmt.Sprintf("more than %d changed rows", MaxChangedRows))
		return
	}
	if c.rows == nil {
		c.rows, c.seen = map[string][]changedRow{}, map[string]bool{}
	}
	c.seen[id] = true
	c.rows[source] = append(c.rows[source], r)
	c.n++
}

// Follow adds what a transaction did to source (a table p reads) to c:
// the rows named by its images, or an escalation when they cannot name
// the view rows to recompute.
func (c *Changes) Follow(p *Plan, source string, ch replication.RelationChange) {
	if c.full != "" {
		return
	}
	if p == nil {
		c.Escalate("the view has no maintenance plan")
		return
	}
	s := p.Sources[source]
	switch {
	case s == nil:
		c.Escalate(fmt.Sprintf("a change to %s, which the view reads through a view or that the plan does not know", source))
	case s.Full != "":
		c.Escalate(fmt.Sprintf("a change to %s (%s)", source, s.Full))
	case ch.Truncated:
		c.Escalate(fmt.Sprintf("TRUNCATE %s", source))
	case ch.ImagesLost != "":
		c.Escalate(fmt.Sprintf("changes to %s: %s", source, ch.ImagesLost))
	case len(ch.Images) < ch.Rows:
		c.Escalate(fmt.Sprintf("changes to %s arrived without their rows", source))
	default:
		// at: where each of the row's columns is in the images; -1 for a
		// filter column they lack, which only costs the filter.
		columns := s.ImageColumns()
		at := make([]int, len(columns))
		// The old row carries the key columns when the replica identity
		// the change was written under (the Relation message's, not the
		// catalog's now) has them all.
		covered := true
		for i, col := range columns {
			at[i] = slices.IndexFunc(ch.Columns, func(c replication.Column) bool { return c.Name == col })
			if i >= len(s.Reads) {
				continue
			}
			if at[i] < 0 {
				c.Escalate(fmt.Sprintf("changes to %s lack its column %s", source, col))
				return
			}
			covered = covered && ch.Columns[at[i]].Key
		}
		for _, img := range ch.Images {
			if reason := c.followImage(s, at, covered, ch.Columns, img); reason != "" {
				c.Escalate(fmt.Sprintf("%s on %s (REPLICA IDENTITY %s when the change was written)", reason, source, identityNames[ch.ReplicaIdentity]))
				return
			}
		}
	}
}

// followImage adds the rows one row change names; a reason when it
// cannot.
func (c *Changes) followImage(s *Source, at []int, covered bool, columns []replication.Column, img replication.RowImage) string {
	reads := len(s.Reads)
	pick := func(vals []replication.Value) (row, bool) {
		r := make(row, len(at))
		for i, a := range at {
			if a < 0 {
				continue
			}
			v := vals[a]
			if v.Unchanged && i < reads {
				return nil, false
			}
			if !v.Null && !v.Unchanged {
				text := v.Text
				r[i] = &text
			}
		}
		return r, true
	}
	// judged: vals carry the filter's columns of the version of the row
	// they stand for; with identityOnly, only the replica identity's
	// columns are that version's.
	judged := func(vals []replication.Value, identityOnly bool) bool {
		for _, a := range at[reads:] {
			if a < 0 || vals[a].Unchanged || identityOnly && !columns[a].Key {
				return false
			}
		}
		return true
	}
	var old *changedRow
	switch {
	case img.OldKind == 'O' || img.OldKind == 'K' && covered:
		r, ok := pick(img.Old)
		if !ok {
			return "an old row without its key columns"
		}
		old = &changedRow{values: r, filtered: judged(img.Old, img.OldKind == 'K')}
	case img.Kind == 'D':
		return "a DELETE whose old row does not carry the key columns (" + strings.Join(s.Reads, ", ") + ")"
	case img.Kind == 'U' && !covered:
		return "an UPDATE whose old key columns (" + strings.Join(s.Reads, ", ") + ") the WAL does not carry"
	}
	if img.Kind != 'D' {
		// Without an old row, an UPDATE's new row stands for the old one
		// too: its key columns are the identity's, unchanged, and so must
		// the filter's be.
		r, ok := pick(img.New)
		filtered := ok && judged(img.New, img.Kind == 'U' && old == nil)
		if !ok && old != nil {
			r, ok = fill(img, at, old.values), true
		}
		if !ok {
			return "an UPDATE that left a TOASTed key column unchanged"
		}
		c.add(s.Name, changedRow{values: r, filtered: filtered})
	}
	if old != nil {
		c.add(s.Name, *old)
	}
	return ""
}

// fill takes the new row's values, and the old row's for those the WAL
// left out as unchanged.
func fill(img replication.RowImage, at []int, old row) row {
	r := make(row, len(at))
	for i, a := range at {
		if a < 0 {
			continue
		}
		v := img.New[a]
		switch {
		case v.Unchanged:
			r[i] = old[i]
		case !v.Null:
			text := v.Text
			r[i] = &text
		}
	}
	return r
}

// identityNames spell the Relation message's replica identity setting.
var identityNames = map[byte]string{'d': "DEFAULT", 'f': "FULL", 'i': "USING INDEX", 'n': "NOTHING"}

// encodeRow is a row's identity in the set of rows kept: whether it is
// filtered, then each value length-prefixed, NULL as -1.
func encodeRow(source string, r changedRow) string {
	var b strings.Builder
	b.WriteString(source)
	if r.filtered {
		b.WriteString("|f")
	}
	for _, v := range r.values {
		if v == nil {
			b.WriteString("|-1|")
			continue
		}
		fmt.Fprintf(&b, "|%d|%s", len(*v), *v)
	}
	return b.String()
}
