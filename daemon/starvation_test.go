package daemon_test

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// A view on another view is refreshed within its max wait while writes keep
// arriving during every refresh of its base, so the base is pending again
// whenever it finishes; and the slot keeps moving meanwhile.
func TestDaemon_SustainedWritesDoNotStarveADependent(t *testing.T) {
	e := newEnv(t, `
		CREATE TABLE app.src (id serial PRIMARY KEY, v int NOT NULL);
		CREATE MATERIALIZED VIEW app.mv_base AS
			SELECT count(*) AS n, sum(v) AS total FROM app.src, LATERAL pg_sleep(0.3) s;
		CREATE UNIQUE INDEX ON app.mv_base (n);
		CREATE MATERIALIZED VIEW app.mv_dep AS SELECT n, total FROM app.mv_base;
		CREATE UNIQUE INDEX ON app.mv_dep (n);`)
	e.cfg.Debounce, e.cfg.MaxWait = 200*time.Millisecond, 2*time.Second
	e.start()
	e.settle()

	const load = 10 * time.Second
	began := time.Now()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	var midLSN pglogrepl.LSN
	for time.Since(began) < load {
		<-ticker.C
		e.exec("INSERT INTO app.src (v) VALUES (1)")
		if midLSN == 0 && time.Since(began) > 3*time.Second {
			// By now a dependent that never runs holds the slot.
			var err error
			if midLSN, _, err = e.confirmedLSN(); err != nil {
				t.Fatal(err)
			}
		}
	}
	endLSN, _, err := e.confirmedLSN()
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	var base, dep int
	for _, ev := range e.events {
		switch ev.View {
		case "app.mv_base":
			base++
		case "app.mv_dep":
			dep++
		}
	}
	e.mu.Unlock()
	// max_wait 2s, a base refresh of 300 ms: the dependent refreshes at
	// least every 2.3 s plus its own refresh, so at least 3 times in 10 s.
	if dep < 3 {
		t.Errorf("during %v of writes the base refreshed %d times and its dependent %d, want at least 3", load, base, dep)
	}
	if endLSN <= midLSN {
		t.Errorf("the slot stayed at %s for the last %v of writes", midLSN, load-3*time.Second)
	}
	e.settle()
	e.assertFresh("app.mv_base", "app.mv_dep")
}
