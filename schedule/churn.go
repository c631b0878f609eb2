package schedule

import (
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
)

// A refresh that rewrites at least churnRatio of a view's rows, churnRepeats
// times in a row, is the seed's bug: CONCURRENTLY finds every row changed.
const (
	churnRatio   = 0.9
	churnRepeats = 3
	churnMinRows = 10 // tiny views churn wholesale for real
)

// churn watches the ratio of rows each concurrent refresh rewrites.
type churn struct {
	streak map[string]int
	warned map[string]bool
	// causes are the check findings that explain churn, per view.
	causes map[string]string
}

func newChurn(findings []catalog.Finding) *churn {
	c := &churn{streak: map[string]int{}, warned: map[string]bool{}, causes: map[string]string{}}
	for _, f := range findings {
		if f.Code == "nondeterministic-output" || f.Code == "opaque-function" {
			c.causes[f.View] = strings.TrimSpace(c.causes[f.View] + " " + f.Message)
		}
	}
	return c
}

// observe records a concurrent refresh and returns its churn ratio and
// whether to warn now (once per view).
func (c *churn) observe(view string, inserted, deleted, rows int64) (ratio float64, warn bool) {
	if rows > 0 {
		ratio = float64(min(inserted, deleted)) / float64(rows)
	}
	if ratio < churnRatio || rows < churnMinRows {
		c.streak[view] = 0
		return ratio, false
	}
	c.streak[view]++
	if c.streak[view] < churnRepeats || c.warned[view] {
		return ratio, false
	}
	c.warned[view] = true
	return ratio, true
}

// cause names the likely reason for a view's churn.
func (c *churn) cause(view string) string {
	if cause := c.causes[view]; cause != "" {
		return cause
	}
	return "no non-deterministic column was found: is the source rewritten wholesale (TRUNCATE and reload, an UPDATE of every row)?"
}
