package maintain

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/replication"
)

// textForms pins, for the rest of the transaction, the text forms of
// dates, times, intervals and floats, whatever the session's: the forms
// the stream's rows come in (replication.TextForms), which every session
// reads back as the same values. A definition's text is read under them,
// so that it means the same where it is run again: under DateStyle SQL a
// timestamptz constant prints with its zone's abbreviation ('IST', read
// back as Israel's), under IntervalStyle sql_standard '-1 day -2 hours'
// prints as '-1 2:00:00' (read back under postgres as -1 day +2 hours);
// ISO prints a numeric offset. A maintained view is computed under them,
// so that a definition formatting such a value as text gives the same
// rows at each maintenance.
var textForms = textFormsSQL()

func textFormsSQL() string {
	var pins []string
	for _, name := range slices.Sorted(maps.Keys(replication.TextForms)) {
		pins = append(pins, fmt.Sprintf("set_config('%s', '%s', true)", name, replication.TextForms[name]))
	}
	return strings.Join(pins, ", ")
}

// PinTextForms pins the text forms for the rest of the transaction q runs
// in.
func PinTextForms(ctx context.Context, q catalog.Querier) error {
	rows, err := q.Query(ctx, "SELECT "+textForms)
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		return fmt.Errorf("pin DateStyle, IntervalStyle and extra_float_digits: %w", err)
	}
	return nil
}
