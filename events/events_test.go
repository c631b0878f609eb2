package events

import "testing"

func TestSubject(t *testing.T) {
	tests := []struct {
		status       Status
		schema, name string
		want         string
	}{
		{StatusOK, "analytics", "mv_revenue", "mvr.refreshed.analytics.mv_revenue"},
		{StatusFailed, "analytics", "mv_revenue", "mvr.failed.analytics.mv_revenue"},
		{StatusOK, "Ana lytics", `My "View".v*>`, "mvr.refreshed.Ana_lytics.My__View__v__"},
		{StatusOK, "s", "", "mvr.refreshed.s._"},
		{StatusOK, "s", "vue-été", "mvr.refreshed.s.vue-_t_"},
	}
	for _, tt := range tests {
		if got := Subject("mvr", tt.status, tt.schema, tt.name); got != tt.want {
			t.Errorf("Subject(%q, %q, %q) = %q, want %q", tt.status, tt.schema, tt.name, got, tt.want)
		}
	}
}
