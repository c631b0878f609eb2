package config

import "testing"

func TestClosestName(t *testing.T) {
	names := []string{"analytics.mv_totals", "analytics.mv_tötals_by_day", "app.orders"}
	for _, c := range []struct {
		want     string
		maxEdits int
		closest  string
	}{
		{"analytics.mv_total", 2, "analytics.mv_totals"},
		{"analytics.mv_totals_by_day", 1, "analytics.mv_tötals_by_day"}, // ö for o: one rune, two bytes
		{"analytics.mv_revenue", 2, ""},
		{"app.order", 0, ""},
	} {
		if got := ClosestName(c.want, names, c.maxEdits); got != c.closest {
			t.Errorf("ClosestName(%q, %d) = %q, want %q", c.want, c.maxEdits, got, c.closest)
		}
	}
}
