package maintain

import (
	"context"
	"fmt"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// textForms pins, for the rest of the transaction, the text forms of
// dates, times, intervals and floats, whatever the session's: the forms
// the stream's rows come in (replication.Connect), which every session
// reads back as the same values. A definition's text is read under them,
// so that it means the same where it is run again: under DateStyle SQL a
// timestamptz constant prints with its zone's abbreviation ('IST', read
// back as Israel's), under IntervalStyle sql_standard '-1 day -2 hours'
// prints as '-1 2:00:00' (read back under postgres as -1 day +2 hours);
// ISO prints a numeric offset. A maintained view is computed under them,
// so that a definition formatting such a value as text gives the same
// rows at each maintenance.
const textForms = `set_config('DateStyle', 'ISO', true), set_config('IntervalStyle', 'postgres', true),
	set_config('extra_float_digits', '3', true)`

// PinTextForms pins the text forms for the rest of the transaction q runs
// in.
func PinTextForms(ctx context.Context, q catalog.Querier) error {
	var dateStyle, intervalStyle, floatDigits string
	if err := q.QueryRow(ctx, "SELECT "+textForms).Scan(&dateStyle, &intervalStyle, &floatDigits); err != nil {
		return fmt.Errorf("pin DateStyle, IntervalStyle and extra_float_digits: %w", err)
	}
	return nil
}
