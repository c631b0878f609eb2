package schedule

import (
	"testing"

	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/replication"
)

// A failed maintenance's work is absorbed into the view's pending work to
// be retried: the retry of a cascade that followed the base's named rows
// follows them again, and one the cascade escalated stays escalated, for
// the same reason, not for the cascade itself.
func TestAbsorbedCascadeKeepsWhatItFollows(t *testing.T) {
	wm := replication.NewWatermark(0)
	plan := &maintain.Plan{Sources: map[string]*maintain.Source{"app.src": {Name: "app.src", Reads: []string{"k"}}}}
	var via maintain.Changes
	via.Follow(plan, "app.src", insertRow("a"))

	followed := &work{}
	followed.inherit(wm, "app.base", &work{}, &via)
	retry := &work{}
	retry.absorb(wm, followed)
	if retry.follow.Full() != "" || retry.follow.Rows() != 1 || retry.reason != events.ReasonCascade {
		t.Errorf("the retry of a cascade following 1 row: reason %s, recomputed whole for %q, %d rows; want a cascade following the row",
			retry.reason, retry.follow.Full(), retry.follow.Rows())
	}

	var whole maintain.Changes
	whole.Escalate("app.base was recomputed whole (TRUNCATE app.src)")
	escalated := &work{}
	escalated.inherit(wm, "app.base", &work{}, &whole)
	retry = &work{}
	retry.absorb(wm, escalated)
	if got := retry.follow.Full(); got != "app.base was recomputed whole (TRUNCATE app.src)" {
		t.Errorf("the retry of a cascade recomputed whole: for %q, want the cascade's reason", got)
	}
}
