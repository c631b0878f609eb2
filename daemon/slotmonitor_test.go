package daemon_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDaemon_SlotMonitoring(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.SlotCheckInterval = 100 * time.Millisecond
	e.start()
	e.settle()
	e.waitFor("a slot event", 30*time.Second, func() (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.slotEvents {
			if s.Active && s.ConfirmedFlushLSN != "" && s.WALStatus == "reserved" && s.Slot == e.cfg.Slot && !s.At.IsZero() {
				return true, nil
			}
		}
		return false, nil
	})
	rec := httptest.NewRecorder()
	e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mvrefresher_slot_active{slot="` + e.cfg.Slot + `"} 1`,
		`mvrefresher_slot_lag_bytes{slot="` + e.cfg.Slot + `"}`,
		`mvrefresher_slot_retained_bytes{slot="` + e.cfg.Slot + `"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The slot's metrics and first event come as soon as the daemon runs, not a
// slot_check_interval later (after every reconnect too).
func TestDaemon_SlotReadAtOnce(t *testing.T) {
	e := newEnv(t, schemaSQL)
	e.cfg.SlotCheckInterval = time.Hour
	e.start()
	e.waitFor("a slot event and metrics", 5*time.Second, func() (bool, error) {
		e.mu.Lock()
		events := len(e.slotEvents)
		e.mu.Unlock()
		rec := httptest.NewRecorder()
		e.daemon.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return events > 0 && strings.Contains(rec.Body.String(), `mvrefresher_slot_lag_bytes{slot="`+e.cfg.Slot+`"}`), nil
	})
}
