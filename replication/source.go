package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MinStandbyVersion is the oldest PostgreSQL major version that decodes on a
// standby.
const MinStandbyVersion = 16

// CurrentLSNSQL is the newest WAL position of a server: what a primary has
// written, or what a standby has replayed (pg_current_wal_lsn fails there).
const CurrentLSNSQL = `CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END`

// Source is the server the stream decodes on.
type Source struct {
	// Standby is true for a physical standby of the primary; false for the
	// primary itself (replication_url unset, or a standby since promoted).
	Standby bool   `json:"standby"`
	Version string `json:"version"`
	// PrimarySlot is the standby's primary_slot_name: without one the
	// primary forgets its hot_standby_feedback while it is disconnected.
	PrimarySlot string `json:"primary_slot,omitempty"`
}

// OpenSource connects to the server the stream decodes on and checks it
// (CheckSource): primary itself when url (replication_url) is empty, else a
// standby of it. redactedURL is url as errors show it, its password masked.
// Close the pool with CloseSource.
func OpenSource(ctx context.Context, primary *pgxpool.Pool, url, redactedURL string, logger *slog.Logger) (*pgxpool.Pool, Source, error) {
	if url == "" {
		return primary, Source{}, nil
	}
	poolCfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, Source{}, fmt.Errorf("parse replication_url: %w", err)
	}
	// The slot's reads and the replay gate's.
	poolCfg.MaxConns = 2
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "mvrefresher"
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, Source{}, fmt.Errorf("connect to replication_url: %w", err)
	}
	src, err := CheckSource(ctx, primary, pool, logger)
	if err != nil {
		pool.Close()
		return nil, Source{}, fmt.Errorf("%w (replication_url %s)", err, redactedURL)
	}
	return pool, src, nil
}

// CloseSource closes what OpenSource opened: nothing when the stream
// decodes on primary.
func CloseSource(pool, primary *pgxpool.Pool) {
	if pool != primary {
		pool.Close()
	}
}

// DecodingOn says where the stream decodes, for logs, check and status:
// databaseURL and replicationURL are database_url and replication_url.
func (s Source) DecodingOn(databaseURL, replicationURL string) string {
	switch {
	case s.Standby:
		return "standby " + DatabaseName(replicationURL)
	case replicationURL != "":
		return "primary " + DatabaseName(replicationURL) + " (replication_url, the same server as database_url's)"
	}
	return "primary " + DatabaseName(databaseURL)
}

// DatabaseName is host:port/database of a connection string, for logs: no
// user, no password.
func DatabaseName(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "?"
	}
	c := cfg.ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// serverIdentity tells servers apart: a standby shares its primary's system
// identifier, and only the same running server has the same start time.
type serverIdentity struct {
	systemID   int64
	startedAt  time.Time
	inRecovery bool
}

func readIdentity(ctx context.Context, pool *pgxpool.Pool) (serverIdentity, error) {
	var id serverIdentity
	err := pool.QueryRow(ctx, `SELECT system_identifier, pg_postmaster_start_time(), pg_is_in_recovery() FROM pg_control_system()`).
		Scan(&id.systemID, &id.startedAt, &id.inRecovery)
	return id, err
}

// CheckSource fails unless server, where the stream would decode, is primary
// itself or a physical standby of it that can decode: PostgreSQL 16 or
// later, wal_level logical and hot_standby_feedback on. A standby without a
// physical slot on the primary gets a warning.
func CheckSource(ctx context.Context, primary, server *pgxpool.Pool, logger *slog.Logger) (Source, error) {
	want, err := readIdentity(ctx, primary)
	if err != nil {
		return Source{}, fmt.Errorf("read database_url's server identity: %w", err)
	}
	got, err := readIdentity(ctx, server)
	if err != nil {
		return Source{}, fmt.Errorf("replication_url: read the server's identity: %w", err)
	}
	if got.systemID != want.systemID {
		return Source{}, fmt.Errorf("replication_url: the server (system identifier %d) is not a standby of database_url's server (system identifier %d): point it at a physical standby of that primary, or leave it empty to decode on the primary", got.systemID, want.systemID)
	}
	var src Source
	var versionNum int
	var feedback, primarySlot string
	err = server.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
		current_setting('hot_standby_feedback'), current_setting('primary_slot_name')`).Scan(&src.Version, &versionNum, &feedback, &primarySlot)
	if err != nil {
		return Source{}, fmt.Errorf("replication_url: read the server's settings: %w", err)
	}
	if !got.inRecovery {
		if !got.startedAt.Equal(want.startedAt) {
			return Source{}, errors.New("replication_url: the server is a primary, and not database_url's server: point it at a physical standby of that primary (after a failover, at the new primary, the same server as database_url's)")
		}
		return src, CheckWALLevel(ctx, server)
	}
	src.Standby, src.PrimarySlot = true, primarySlot
	if versionNum/10000 < MinStandbyVersion {
		return Source{}, fmt.Errorf("replication_url: the standby is PostgreSQL %s; decoding on a standby needs PostgreSQL %d or later: upgrade it, or leave replication_url empty to decode on the primary", src.Version, MinStandbyVersion)
	}
	if err := CheckWALLevel(ctx, server); err != nil {
		return Source{}, fmt.Errorf("replication_url: the standby: %w", err)
	}
	if feedback != "on" {
		return Source{}, errors.New("replication_url: hot_standby_feedback is off on the standby: the primary would vacuum away catalog rows the slot needs, and the standby would invalidate the slot; set hot_standby_feedback = on there")
	}
	if primarySlot == "" {
		logger.Warn("the standby streams from the primary without a physical slot (primary_slot_name is empty): while it is disconnected, the primary forgets its hot_standby_feedback and may vacuum catalog rows the slot needs, which invalidates it; give the standby a physical slot")
	}
	return src, nil
}

// LogStandbySnapshot asks the primary to log its running transactions: a
// slot being created on a standby waits for such a record, which the
// primary otherwise writes every 15 s at most.
func LogStandbySnapshot(ctx context.Context, primary *pgxpool.Pool) error {
	_, err := primary.Exec(ctx, "SELECT pg_log_standby_snapshot()")
	if sqlState(err) == pgerrcode.InsufficientPrivilege {
		return fmt.Errorf("log a standby snapshot: %w (GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO the role, or creating the slot waits up to 15 s for the primary's own)", err)
	}
	if err != nil {
		return fmt.Errorf("log a standby snapshot: %w", err)
	}
	return nil
}

// feedbackTimeout bounds AwaitCatalogFeedback: a standby sends its
// hot_standby_feedback every wal_receiver_status_interval (10 s by default).
const feedbackTimeout = time.Minute

// AwaitCatalogFeedback waits until the primary holds back the catalog rows
// slot, just created on the standby, needs: until primarySlot, the
// standby's physical slot on the primary, has a catalog_xmin at or before
// the new slot's. Before that, the primary may vacuum rows of the catalog
// the daemon's own refreshes churn (their temporary tables), and the
// standby then invalidates the slot (a recovery conflict, rows_removed).
func AwaitCatalogFeedback(ctx context.Context, primary, standby *pgxpool.Pool, slot, primarySlot string, logger *slog.Logger) error {
	var need *int64
	if err := standby.QueryRow(ctx, `SELECT catalog_xmin::text::bigint FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&need); err != nil {
		return fmt.Errorf("read the catalog_xmin of replication slot %q on the standby: %w", slot, err)
	}
	if need == nil {
		return nil
	}
	deadline := time.Now().Add(feedbackTimeout)
	for logged := false; ; logged = true {
		var held *int64
		err := primary.QueryRow(ctx, `SELECT catalog_xmin::text::bigint FROM pg_replication_slots WHERE slot_name = $1`, primarySlot).Scan(&held)
		if errors.Is(err, pgx.ErrNoRows) {
			logger.Warn("the standby's primary_slot_name names no slot on the primary: the primary does not keep its hot_standby_feedback", "primary_slot_name", primarySlot)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the standby's physical slot %q on the primary: %w", primarySlot, err)
		}
		// Transaction ids compare modulo 2^32.
		if held != nil && int32(uint32(*held)-uint32(*need)) <= 0 {
			return nil
		}
		if time.Now().After(deadline) {
			logger.Warn("the standby's hot_standby_feedback has not reached the primary: the slot may be invalidated by a recovery conflict", "waited", feedbackTimeout, "primary_slot_name", primarySlot)
			return nil
		}
		if !logged {
			logger.Info("waiting for the standby's hot_standby_feedback to reach the primary before refreshing (it is sent every wal_receiver_status_interval)", "primary_slot_name", primarySlot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(snapshotInterval):
		}
	}
}
