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

// row is values of columns, in order; nil is SQL NULL.
type row []*string

// changedRow is a changed row: its values of its source's Reads (key) and,
// when the view's filter on the source may judge it (filtered), of the
// filter's other columns (filter, in filterOnly's order). It may when
// those are the values of the version of the row it stands for; a row
// standing for a version the WAL did not carry in full (the old one of an
// UPDATE that sent no old row, an old row without the filter's columns, a
// value unchanged or too long to keep) names its view rows whatever the
// filter says.
type changedRow struct {
	key, filter row
	filtered    bool
}

// Changes is what one maintenance of a view must follow: the changed rows
// of each source, or why it must recompute the view whole. The zero value
// follows nothing.
type Changes struct {
	full string
	rows map[string][]changedRow // by source name, each key once
	seen map[string]int          // source and key, encoded -> index in rows
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

// add keeps r, once per key: two versions of a key that the filter would
// judge apart name it whatever the filter says, so that rows of one key
// take one place however many there are.
func (c *Changes) add(source string, r changedRow) {
	if c.full != "" {
		return
	}
	id := encodeRow(source, r.key)
	if at, ok := c.seen[id]; ok {
		if kept := &c.rows[source][at]; kept.filtered && (!r.filtered || encodeRow("", kept.filter) != encodeRow("", r.filter)) {
			kept.filter, kept.filtered = nil, false
		}
		return
	}
	if c.n >= MaxChangedRows {
		c.Escalate(fmt.Sprintf("more than %d changed rows", MaxChangedRows))
		return
	}
	if c.rows == nil {
		c.rows, c.seen = map[string][]changedRow{}, map[string]int{}
	}
	if !r.filtered {
		r.filter = nil
	}
	c.seen[id] = len(c.rows[source])
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
	// pick reads a version's values; why not when a key column's is not
	// in the image.
	pick := func(vals []replication.Value) (row, string) {
		r := make(row, len(at))
		for i, a := range at {
			if a < 0 {
				continue
			}
			switch v := vals[a]; {
			case i < reads && v.Unchanged:
				return nil, "a TOASTed key column left unchanged"
			case i < reads && v.Dropped:
				return nil, fmt.Sprintf("a key column value longer than %d bytes, which the stream does not keep", replication.MaxImageValueBytes)
			case !v.Null && !v.Unchanged && !v.Dropped:
				text := v.Text
				r[i] = &text
			}
		}
		return r, ""
	}
	// judged: vals carry the filter's columns of the version of the row
	// they stand for; with identityOnly, only the replica identity's
	// columns are that version's.
	judged := func(vals []replication.Value, identityOnly bool) bool {
		for _, a := range at[reads:] {
			if a < 0 || vals[a].Unchanged || vals[a].Dropped || identityOnly && !columns[a].Key {
				return false
			}
		}
		return true
	}
	var old *changedRow
	switch {
	case img.OldKind == 'O' || img.OldKind == 'K' && covered:
		r, why := pick(img.Old)
		if why != "" {
			return "an old row without its key columns (" + why + ")"
		}
		old = &changedRow{key: r[:reads], filter: r[reads:], filtered: judged(img.Old, img.OldKind == 'K')}
	case img.Kind == 'D':
		return "a DELETE whose old row does not carry the key columns (" + strings.Join(s.Reads, ", ") + ")"
	case img.Kind == 'U' && !covered:
		return "an UPDATE whose old key columns (" + strings.Join(s.Reads, ", ") + ") the WAL does not carry"
	}
	if img.Kind != 'D' {
		// Without an old row, an UPDATE's new row stands for the old one
		// too: its key columns are the identity's, unchanged, and so must
		// the filter's be.
		r, why := pick(img.New)
		switch {
		case why == "":
			c.add(s.Name, changedRow{key: r[:reads], filter: r[reads:], filtered: judged(img.New, img.Kind == 'U' && old == nil)})
		case old != nil && !slices.ContainsFunc(at[:reads], func(a int) bool { return img.New[a].Dropped }):
			// Only unchanged TOASTed values are missing: the old row has them.
			c.add(s.Name, changedRow{key: fill(img, at[:reads], old.key)})
		case img.Kind == 'U':
			return "an UPDATE with " + why
		default:
			return "an INSERT with " + why
		}
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

// encodeRow is a row's identity in the set of rows kept: each value
// length-prefixed, NULL as -1.
func encodeRow(source string, r row) string {
	var b strings.Builder
	b.WriteString(source)
	for _, v := range r {
		if v == nil {
			b.WriteString("|-1|")
			continue
		}
		fmt.Fprintf(&b, "|%d|%s", len(*v), *v)
	}
	return b.String()
}
