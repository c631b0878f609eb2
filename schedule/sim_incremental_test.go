package schedule

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/maintain"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// newMaintainedSim manages app.kept, maintained incrementally from the
// changed rows of app.src (their column k names its rows), with
// max_staleness 3s: a maintenance takes 10 ms, a full recompute 30 s.
// took seeds the estimates of full recomputes, as the refresh log would.
func newMaintainedSim(t *testing.T, logs *bytes.Buffer, took map[string]time.Duration, adjust ...func(*Options)) *sim {
	t.Helper()
	kept := &catalog.View{OID: 1, Schema: "app", Relname: "kept", Name: "app.kept", Sources: []*catalog.Table{simSource()}}
	cfg := config.Default()
	target := 3 * time.Second
	cfg.Views = map[string]config.View{"app.kept": {MaxStaleness: &target}}
	plan := &maintain.Plan{Sources: map[string]*maintain.Source{"app.src": {Name: "app.src", Reads: []string{"k"}}}}
	adjust = append([]func(*Options){func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.Maintenance = map[string]*refresher.Maintenance{"app.kept": {Plan: plan}}
	}}, adjust...)
	m := newSim(t, cfg, took, []*catalog.View{kept}, adjust...)
	m.took["app.kept"] = 30 * time.Second
	m.tookIncremental = map[string]time.Duration{"app.kept": 10 * time.Millisecond}
	return m
}

// insertRow is an INSERT into app.src of a row with k = key, as the
// stream hands it to a maintained view.
func insertRow(key string) replication.RelationChange {
	return replication.RelationChange{OID: srcOID, Namespace: "app", Name: "src", Rows: 1, ReplicaIdentity: 'd',
		Columns: []replication.Column{{Name: "k", Key: true}},
		Images:  []replication.RowImage{{Kind: 'I', New: []replication.Value{{Text: key}}}}}
}

// incrementalStart is when app.kept's incremental maintenance starts
// after its change: 3 s less 10 ms less the 150 ms margin.
const incrementalStart = 2840 * time.Millisecond

// expectStart checks that app.kept refreshed once after its first skip
// refreshes: a maintenance in mode, started delay after at.
func expectStart(t *testing.T, m *sim, skip int, at time.Time, delay time.Duration, mode string) {
	t.Helper()
	got := m.refreshesOf("app.kept")
	if len(got) != skip+1 {
		t.Fatalf("app.kept refreshed%s; want %d refreshes", summarize(got), skip+1)
	}
	e := got[skip]
	if started := e.StartedAt.Sub(at.UTC()); started != delay || e.Maintenance != mode {
		t.Errorf("app.kept's refresh %d: maintenance %s, started %s after its change; want maintenance %s, after %s", skip+1, e.Maintenance, started, mode, delay)
	}
}

func cannotBeMet(logs *bytes.Buffer) int {
	return strings.Count(logs.String(), "max_staleness cannot be met")
}

// A maintained view is planned by the estimate of the refresh its pending
// work runs: an incremental maintenance waits for as long as the target
// allows, however long its full recomputes take, and the target is not
// said to be unmeetable; work escalated to a full recompute (a TRUNCATE)
// starts at once, as its estimate dictates, however its rules were
// planned before the escalation; the next change is incremental again.
func TestSim_MaintainedViewIsPlannedByTheKindOfItsWork(t *testing.T) {
	var logs bytes.Buffer
	m := newMaintainedSim(t, &logs, map[string]time.Duration{"app.kept": 30 * time.Second}, func(o *Options) {
		o.IncrementalDurations = map[string]time.Duration{"app.kept": 10 * time.Millisecond}
	})
	if n := cannotBeMet(&logs); n != 0 {
		t.Errorf("%d warnings that the target cannot be met, want none:\n%s", n, logs.String())
	}

	at := m.s.now
	m.commitChange(insertRow("a"))
	m.advance(5 * time.Second)
	expectStart(t, m, 0, at, incrementalStart, maintain.ModeIncremental)

	at = m.s.now
	m.commitChange(insertRow("b"))
	m.advance(time.Second) // planned as incremental work
	m.commitChange(replication.RelationChange{OID: srcOID, Namespace: "app", Name: "src", Truncated: true})
	m.advance(31 * time.Second)
	expectStart(t, m, 1, at, time.Second, maintain.ModeFull)

	at = m.s.now
	m.commitChange(insertRow("c"))
	m.advance(5 * time.Second)
	expectStart(t, m, 2, at, incrementalStart, maintain.ModeIncremental)
	if n := cannotBeMet(&logs); n != 0 {
		t.Errorf("%d warnings that the target cannot be met, want none:\n%s", n, logs.String())
	}
}

// After a full recompute (the startup's, the last in the refresh log) and
// before any incremental maintenance, the first change is planned as
// conservatively as a full recompute, and starts at once; once a
// maintenance has run, changes wait as long as its target allows. The
// target is never said to be unmeetable.
func TestSim_MaintainedViewLearnsItsIncrementalEstimate(t *testing.T) {
	var logs bytes.Buffer
	m := newMaintainedSim(t, &logs, map[string]time.Duration{"app.kept": 30 * time.Second})

	at := m.s.now
	m.commitChange(insertRow("a"))
	m.advance(time.Second)
	expectStart(t, m, 0, at, 0, maintain.ModeIncremental)

	at = m.s.now
	m.commitChange(insertRow("b"))
	m.advance(5 * time.Second)
	expectStart(t, m, 1, at, incrementalStart, maintain.ModeIncremental)
	if n := cannotBeMet(&logs); n != 0 {
		t.Errorf("%d warnings that the target cannot be met, want none:\n%s", n, logs.String())
	}
}

// The warning about a target a maintained view cannot meet rests on its
// incremental maintenances: once one has run and takes the target, it
// warns (naming the estimate's kind).
func TestSim_MaintainedViewWarnsWhenItsMaintenanceTakesTheTarget(t *testing.T) {
	var logs bytes.Buffer
	m := newMaintainedSim(t, &logs, map[string]time.Duration{"app.kept": 30 * time.Second})
	m.tookIncremental["app.kept"] = 2900 * time.Millisecond
	m.commitChange(insertRow("a"))
	m.advance(3 * time.Second)
	if got := m.refreshesOf("app.kept"); len(got) != 1 {
		t.Fatalf("app.kept refreshed%s; want once", summarize(got))
	}
	want := fmt.Sprintf("view=app.kept max_staleness=3s target_of=app.kept refresh_estimate=2.9s arrival_lag=0s maintenance=%s", maintain.ModeIncremental)
	if n := cannotBeMet(&logs); n != 1 || !strings.Contains(logs.String(), want) {
		t.Errorf("want one warning, with %q:\n%s", want, logs.String())
	}
}

// A maintenance planned as incremental that recomputes the view whole at
// run time (too many groups, the cost guard) and so misses its target says
// so, rather than that it was slower than planned.
func TestSim_MaintainedViewEscalatedAtRunTimeSaysWhyItWasLate(t *testing.T) {
	var logs bytes.Buffer
	m := newMaintainedSim(t, &logs, map[string]time.Duration{"app.kept": 30 * time.Second}, func(o *Options) {
		o.IncrementalDurations = map[string]time.Duration{"app.kept": 10 * time.Millisecond}
	})
	m.escalate = "the changes name up to 20000 view rows (more than 10000)"
	m.commitChange(insertRow("a"))
	m.advance(35 * time.Second)
	if got := m.refreshesOf("app.kept"); len(got) != 1 || got[0].Maintenance != maintain.ModeFull {
		t.Fatalf("app.kept refreshed%s; want one full recompute", summarize(got))
	}
	want := `reason="it was recomputed whole (the changes name up to 20000 view rows (more than 10000)), planned as an incremental maintenance: 30s, planned 10ms"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("want the missed target's reason %s in:\n%s", want, logs.String())
	}
}
