// Package maintain keeps a view maintained incrementally: the materialized
// view becomes a table of the same name, its definition a plain view next
// to it, and each batch of changes recomputes, from that definition, only
// the rows (groups) the changes touched, writing only those that differ.
// It decides which views can be maintained so (Analyze), converts a view
// and back (Enable, Disable), and runs the maintenance (Maintain).
package maintain

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// DefinitionSuffix names the plain view that keeps a maintained table's
// definition: analytics.mv_x is defined by analytics."mv_x__definition".
const DefinitionSuffix = catalog.MaintainedDefinitionSuffix

// MaxNameLen is the longest relation name that can be maintained: its
// definition view's name must fit PostgreSQL's 63 bytes.
const MaxNameLen = 63 - len(DefinitionSuffix)

// markerPrefix starts the comment on a definition view: it tells the
// daemon, and a person reading \d+, that the view next to it is maintained.
const markerPrefix = catalog.MaintainedMarkerPrefix

// Marker is what the definition view's comment records.
type Marker struct {
	// Table is the maintained table, format('%I.%I').
	Table string `json:"table"`
	// TimeZone is the TimeZone setting the table was computed under: every
	// maintenance pins it, so that date_trunc('day', a timestamptz) groups
	// rows the same way each time.
	TimeZone string `json:"timezone"`
}

// Comment is the definition view's comment for m.
func (m Marker) Comment() string {
	b, _ := json.Marshal(m) //nolint:errchkjson // two strings cannot fail
	return markerPrefix + string(b) +
		"\nThe definition of a table mvrefresher maintains incrementally. Do not edit it: turn incremental off for the view to get its materialized view back."
}

// ParseMarker reads a definition view's comment; ok is false for a
// comment mvrefresher did not write.
func ParseMarker(comment string) (m Marker, ok bool, err error) {
	rest, found := strings.CutPrefix(comment, markerPrefix)
	if !found {
		return Marker{}, false, nil
	}
	line, _, _ := strings.Cut(rest, "\n")
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return Marker{}, true, fmt.Errorf("read the incremental maintenance marker %q: %w", line, err)
	}
	return m, true, nil
}
