package inspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/replication"
	"github.com/mvrefresher/mvrefresher/schedule"
)

// StreamStatus is where the replication stream decodes.
type StreamStatus struct {
	// DecodingOn is "primary host:port/db" or "standby host:port/db".
	DecodingOn string `json:"decoding_on"`
	replication.Source
}

// Check lints the managed views, their incremental maintenance included.
// It needs no replication connection.
func (in *Inspector) Check(ctx context.Context) ([]catalog.Finding, error) {
	findings, err := catalog.Check(ctx, in.pool, in.catalog, func(v string) bool {
		return in.cfg.ViewSettings(v).Concurrently == config.ConcurrentlyAlways
	}, func(v string) bool {
		return in.cfg.ViewSettings(v).RefreshEvery > 0
	})
	if err != nil {
		return nil, err
	}
	incremental, err := in.checkIncremental(ctx)
	if err != nil {
		return nil, err
	}
	findings = append(findings, incremental...)
	// As catalog.Check has them: by view, a view's errors first.
	slices.SortStableFunc(findings, func(a, b catalog.Finding) int {
		if c := strings.Compare(a.View, b.View); c != 0 {
			return c
		}
		return bool2int(b.Severity == catalog.SeverityError) - bool2int(a.Severity == catalog.SeverityError)
	})
	return findings, nil
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CheckSetup finds, with the daemon's own checks and in its words, what
// would make it refuse to start on database_url: wal_level, views: keys
// naming no view, a refresh log the role cannot create. It also finds the
// views whose min_interval is longer than their effective max_staleness,
// which then miss their target. Findings not about one view have no View;
// those about a views: key have the key.
func (in *Inspector) CheckSetup(ctx context.Context) ([]catalog.Finding, error) {
	var out []catalog.Finding
	setupError := func(code string, err error) {
		out = append(out, catalog.Finding{Severity: catalog.SeverityError, Code: code, Message: err.Error()})
	}
	if err := replication.CheckWALLevel(ctx, in.pool); err != nil {
		setupError("wal-level", err)
	}
	problems, err := catalog.CheckViewKeys(ctx, in.pool, slices.Collect(maps.Keys(in.cfg.Views)), in.cfg.Schemas)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		out = append(out, catalog.Finding{View: p.View, Severity: catalog.SeverityError, Code: p.Code, Message: p.Message})
	}
	if err := in.log.CheckCreatable(ctx, in.pool); err != nil {
		setupError("refresh-log", err)
	}
	rows, err := in.log.Rows(ctx, in.pool, in.catalog.Names())
	if err != nil {
		return nil, err
	}
	targets := schedule.TargetsFromLog(in.cfg, in.catalog, rows)
	for _, name := range in.catalog.Names() {
		t, ok := targets[name]
		minInterval := in.cfg.ViewSettings(name).MinInterval
		if !ok || minInterval <= t.MaxStaleness {
			continue
		}
		target := t.MaxStaleness.String()
		if t.From != name {
			target += " (for " + t.From + ")"
		}
		out = append(out, catalog.Finding{View: name, Severity: catalog.SeverityError, Code: "min-interval-over-target", Message: fmt.Sprintf(
			"min_interval (%s) is longer than its max_staleness %s: a change committed soon after a refresh waits for min_interval, and misses the target. Fix: lower its min_interval below %s, or raise max_staleness",
			minInterval, target, t.MaxStaleness)})
	}
	return out, nil
}

// CheckStream checks the server the stream would decode on, as the daemon
// does at start, and says which it is and its version. It fails when the
// daemon could not decode there; what else would stop the daemon there (no
// room for the slot, a replication connection the server refuses) is in
// the findings, which have no View. A slot another process streams from is
// no problem: a daemon runs, and another would stand by.
func (in *Inspector) CheckStream(ctx context.Context) (StreamStatus, []catalog.Finding, error) {
	slotPool, stream, err := in.openSource(ctx)
	if err != nil {
		return StreamStatus{}, nil, err
	}
	defer replication.CloseSource(slotPool, in.pool)
	if stream.Version == "" { // decoding on database_url: not read yet
		if err := in.pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&stream.Version); err != nil {
			return StreamStatus{}, nil, fmt.Errorf("read the server version: %w", err)
		}
	}
	var findings []catalog.Finding
	if err := replication.CheckSlotFree(ctx, slotPool, in.cfg.Slot); err != nil && !errors.Is(err, replication.ErrSlotInUse) {
		findings = append(findings, catalog.Finding{Severity: catalog.SeverityError, Code: "replication-slot", Message: err.Error()})
	}
	conn, err := replication.Connect(ctx, in.cfg.StreamURL(), in.cfg.Slot, in.cfg.Publication, slog.New(slog.DiscardHandler))
	if err != nil {
		findings = append(findings, catalog.Finding{Severity: catalog.SeverityError, Code: "replication-connection", Message: err.Error()})
	} else if err := conn.Close(ctx); err != nil {
		return StreamStatus{}, nil, fmt.Errorf("close the replication connection: %w", err)
	}
	return stream, findings, nil
}

// openSource connects to the server the stream decodes on and checks it as
// the daemon does, saying nothing of what it finds but in the result. Close
// the pool with replication.CloseSource.
func (in *Inspector) openSource(ctx context.Context) (*pgxpool.Pool, StreamStatus, error) {
	url := in.cfg.ReplicationURL
	slotPool, src, err := replication.OpenSource(ctx, in.pool, url, config.RedactURL(url), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, StreamStatus{}, err
	}
	return slotPool, StreamStatus{DecodingOn: src.DecodingOn(in.cfg.DatabaseURL, url), Source: src}, nil
}
