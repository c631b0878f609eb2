package events

import (
	"testing"
	"time"
)

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

func TestMsgID(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name string
		e    Refresh
		want string
	}{
		{"change", Refresh{View: "a.v", Status: StatusOK, Reason: ReasonChange, LSN: "0/10", Changes: 3, StartedAt: at}, "a.v@0/10"},
		{"cascade of a change", Refresh{View: "a.v", Status: StatusOK, Reason: ReasonCascade, LSN: "0/10", Changes: 3, StartedAt: at}, "a.v@0/10"},
		{"failed", Refresh{View: "a.v", Status: StatusFailed, Reason: ReasonChange, LSN: "0/10", Attempt: 2}, "a.v@0/10/failed/2"},
		{"periodic", Refresh{View: "a.v", Status: StatusOK, Reason: ReasonPeriodic, LSN: "0/10", StartedAt: at}, "a.v@0/10/at/1767323045000000006"},
		{"cascade of a periodic", Refresh{View: "a.v", Status: StatusOK, Reason: ReasonCascade, LSN: "0/10", StartedAt: at}, "a.v@0/10/at/1767323045000000006"},
	}
	for _, tt := range tests {
		if got := MsgID(tt.e); got != tt.want {
			t.Errorf("%s: MsgID = %q, want %q", tt.name, got, tt.want)
		}
	}
}
