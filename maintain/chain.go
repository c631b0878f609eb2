package maintain

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Named are the rows of a maintained table one maintenance recomputed, by
// their key: the key tuples its changed source rows compute, rows deleted
// included. They come from the changed source rows alone, not from what
// the maintenance wrote, so a replayed maintenance (which writes nothing)
// names the same ones: a maintained view built on the table that follows
// them is brought up to date after a crash between the two maintenances.
type Named struct {
	// Full says why the maintenance named no rows: it recomputed the whole
	// table, or changes computed only some of its key columns.
	Full string
	// key are the table's key columns, in Plan.Key order; keys the tuples,
	// each value as the column type's text, nil for NULL.
	key  []string
	keys []row
}

// keyNames are p's key columns, in Plan.Key order.
func (p *Plan) keyNames() []string {
	names := make([]string, len(p.Key))
	for i, k := range p.Key {
		names[i] = p.Columns[k].Name
	}
	return names
}

// addKeys adds the tuples evaluateKeys returned, a JSON array of arrays of
// text in Plan.Key order.
func (n *Named) addKeys(tuples string) error {
	var keys [][]*string
	if err := json.Unmarshal([]byte(tuples), &keys); err != nil {
		return fmt.Errorf("read the key tuples named: %w", err)
	}
	for _, k := range keys {
		n.keys = append(n.keys, row(k))
	}
	return nil
}

// FollowsTable says why p's view cannot follow the rows a maintenance of
// the maintained table base names (p's view reads base), "" when it can:
// base is a source whose changed rows name p's view rows, by key columns
// of base only (a key tuple carries nothing else), and a maintenance of
// base can name its rows (a source of it names whole rows; otherwise each
// maintenance of it names none, and p's view is recomputed whole after
// each).
func (p *Plan) FollowsTable(base *Plan) string {
	s := p.Sources[base.Table]
	switch {
	case s == nil:
		return fmt.Sprintf("%s reads %s other than as a table in its FROM", p.Table, base.Table)
	case s.Full != "":
		return fmt.Sprintf("a change to %s (%s)", base.Table, s.Full)
	}
	key := base.keyNames()
	var other []string
	for _, c := range s.Reads {
		if !slices.Contains(key, c) {
			other = append(other, c)
		}
	}
	if len(other) > 0 {
		return fmt.Sprintf("%s reads columns of %s other than its key (%s)", p.Table, base.Table, strings.Join(other, ", "))
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(base.Sources)), func(s *Source) bool { return s.Full == "" && base.namesRows(s) }) {
		return fmt.Sprintf("no maintenance of %s names rows of it: none of its sources is followed row by row and computes its whole key", base.Table)
	}
	return ""
}

// namesRows says whether the changed rows of s, a source of p, name whole
// rows of p's view: they compute every key column. A dimension's rows
// compute only some, and name groups of rows.
func (p *Plan) namesRows(s *Source) bool { return len(s.Keys) == len(p.Key) }

// FollowTable adds to c the rows of the maintained table base (planned as
// base) that a maintenance of it named (n; nil when it was not asked to),
// as changed rows of base; or an escalation, with why, when they cannot
// name p's view rows.
func (c *Changes) FollowTable(p *Plan, base *Plan, n *Named) {
	if c.full != "" {
		return
	}
	if why := p.FollowsTable(base); why != "" {
		c.Escalate(why)
		return
	}
	switch {
	case n == nil:
		c.Escalate(base.Table + " was maintained without naming the rows it recomputed")
		return
	case n.Full != "":
		c.Escalate(n.Full)
		return
	}
	s := p.Sources[base.Table]
	columns := s.ImageColumns()
	at := make([]int, len(columns))
	// A key names one row of base, the same before and after: the filter
	// judges it when it reads only key columns.
	filtered := true
	for i, col := range columns {
		if at[i] = slices.Index(n.key, col); at[i] >= 0 {
			continue
		}
		if i >= len(s.Reads) {
			filtered = false
			continue
		}
		// Its plan changed while it ran.
		c.Escalate(fmt.Sprintf("%s was maintained by another key than it has now", base.Table))
		return
	}
	for _, k := range n.keys {
		r := make(row, len(at))
		for i, a := range at {
			if a >= 0 {
				r[i] = k[a]
			}
		}
		c.add(base.Table, changedRow{key: r[:len(s.Reads)], filter: r[len(s.Reads):], filtered: filtered})
	}
}
