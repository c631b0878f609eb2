package maintain

import (
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// A changed row that the view's WHERE rejects on its own columns is in no
// row of the view, before or after: its key names nothing to recompute.
// Leaving it out matters where few changed rows reach the view (a view of
// purchases among all events): the recompute reads only the rows that
// can be in it, and the cost guard weighs only those.

// sessionPrinted are the types whose text form depends on the session
// that printed it (the walsender's search_path, lc_monetary): a changed
// row's value may not read back as the same in the maintenance. A
// conjunct reading such a column is not used: leaving it out costs only
// the filter.
var sessionPrinted = map[string]bool{
	"regclass": true, "regtype": true, "regproc": true, "regprocedure": true, "regoper": true, "regoperator": true,
	"regconfig": true, "regdictionary": true, "regnamespace": true, "regrole": true, "regcollation": true, "money": true,
}

// sourceFilter returns the conjuncts of the view's WHERE (conjuncts, each
// in parentheses, as filters reads them) that read the columns of relation
// oid alone, joined by AND, and the columns they read; "" when none does.
// A source on the nullable side of an outer join is never filtered: its
// rows that the WHERE rejects can still remove rows padded with nulls (its
// Full is set before).
func sourceFilter(conjuncts []string, filters []catalog.ShapeFilter, oid uint32, rel *relInfo) (string, []string) {
	if len(conjuncts) != len(filters) {
		return "", nil // pg_get_viewdef printed it otherwise than expected
	}
	var kept, columns []string
	for i, f := range filters {
		atts, only := f.Reads[oid]
		if !only || len(f.Reads) != 1 || slices.ContainsFunc(atts, func(a int16) bool { return a <= 0 || sessionPrinted[rel.types[rel.columns[a]]] }) {
			continue
		}
		kept = append(kept, conjuncts[i])
		for _, a := range atts {
			if name := rel.columns[a]; !slices.Contains(columns, name) {
				columns = append(columns, name)
			}
		}
	}
	slices.Sort(columns)
	return strings.Join(kept, " AND "), columns
}

// setFilter sets s's filter from the view's WHERE. The conjuncts name
// s's columns under its alias, as its key expressions do, and evaluate
// over its changed rows the same way.
func (s *Source) setFilter(conjuncts []string, filters []catalog.ShapeFilter, oid uint32, rel *relInfo) {
	var columns []string
	s.Filter, columns = sourceFilter(conjuncts, filters, oid, rel)
	for _, c := range columns {
		if !slices.Contains(s.Reads, c) {
			s.filterOnly, s.filterTypes = append(s.filterOnly, c), append(s.filterTypes, rel.types[c])
		}
	}
}

// ImageColumns are the columns of the source's changed rows the stream
// must hand over, and a changed row carries: those naming the view rows
// (Reads), then the other columns the view's filter on the table reads.
func (s *Source) ImageColumns() []string { return append(slices.Clip(s.Reads), s.filterOnly...) }

// imageTypes are the types of ImageColumns.
func (s *Source) imageTypes() []string { return append(slices.Clip(s.readTypes), s.filterTypes...) }
