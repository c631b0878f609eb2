// Package refresher refreshes materialized views and records every refresh
// in the refresh log table.
package refresher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/maintain"
)

// Refresher runs refreshes and records them in the refresh log.
type Refresher struct {
	pool             *pgxpool.Pool
	log              Log
	lockTimeout      time.Duration
	statementTimeout time.Duration
}

// New returns a Refresher recording its refreshes in log.
func New(pool *pgxpool.Pool, log Log, lockTimeout, statementTimeout time.Duration) *Refresher {
	return &Refresher{
		pool:             pool,
		log:              log,
		lockTimeout:      lockTimeout,
		statementTimeout: statementTimeout,
	}
}

// Mode is how a view is refreshed.
type Mode int

const (
	// ModeAuto refreshes CONCURRENTLY when the view allows it (populated, a
	// usable unique index) and plainly otherwise.
	ModeAuto Mode = iota
	// ModeConcurrently refreshes CONCURRENTLY; a view that cannot be is an
	// error.
	ModeConcurrently
	// ModePlain never refreshes CONCURRENTLY: readers wait (ACCESS
	// EXCLUSIVE).
	ModePlain
)

// Request is one refresh to run.
type Request struct {
	View *catalog.View
	Mode Mode
	// LSN is the newest source change the refresh includes, recorded in the
	// log.
	LSN pglogrepl.LSN
	// Txns are transactions whose changes the refresh is for, from
	// TxnsFrom to Txns.To, and before them (from Txns.From) older ones of
	// the daemon's log that no snapshot has been found to see yet. Their
	// commits were decoded, but a commit can reach the WAL before other
	// sessions see it (synchronous replication waits in between): the
	// refresh covers only what its snapshot sees. It reports the oldest of
	// its own it did not see (Outcome.Unseen), and how far from Txns.From
	// its snapshot saw everything (Outcome.VisibleBefore). Those from
	// TxnsFrom on may include other views' transactions: that can only
	// make the refresh wait for or report a commit it did not need.
	Txns     TxnSpan
	TxnsFrom Seq
	// Deferrable: nothing but its transactions asks for this refresh, so
	// when its snapshot sees none of them it does not run
	// (Outcome.Deferred).
	Deferrable bool
	// Barrier lists transactions (full ids, see Writers) that were running
	// when the view came to owe a refresh the stream cannot carry: the
	// refresh does not run (Outcome.Deferred, Outcome.WaitsFor) until its
	// snapshot sees them all ended.
	Barrier []uint64
	// Maintenance is set for a view maintained incrementally
	// (View.Maintained): the refresh is a maintenance of its table.
	Maintenance *Maintenance
	// Dependents are the views built on View, directly or not. When View
	// owed a refresh the WAL will not bring (see Owed), its refresh passes
	// the debt on to them in the log, in its own transaction: their
	// cascade lives in memory only, and no replay would bring it back.
	Dependents []string
}

// Txn is a transaction a refresh is for.
type Txn struct {
	Xid       uint32
	CommitLSN pglogrepl.LSN
}

// Outcome is what happened.
type Outcome struct {
	// LSN is the position recorded in the log: Request.LSN, or the commit
	// of the oldest of the request's transactions the refresh's snapshot
	// did not see.
	LSN pglogrepl.LSN
	// Unseen is the oldest of the request's own transactions (from
	// Request.TxnsFrom) the refresh's snapshot did not see, and UnseenTxn
	// that transaction; 0 when it saw them all. From it on they still need
	// a refresh.
	Unseen    Seq
	UnseenTxn Txn
	// VisibleBefore: the snapshot saw every transaction of Request.Txns
	// before this one, so every later snapshot sees them too; 0 when the
	// snapshot was not read.
	VisibleBefore Seq
	// Deferred: the snapshot saw none of a deferrable request's
	// transactions, so nothing ran and nothing was recorded.
	Deferred bool
	// WaitsFor is the oldest transaction of Request.Barrier still running,
	// when that deferred the refresh.
	WaitsFor     uint64
	Concurrently bool
	StartedAt    time.Time
	FinishedAt   time.Time
	// RowsInserted and RowsDeleted are set for a concurrent refresh only.
	RowsInserted, RowsDeleted *int64
	// Rows is the view's row count after a concurrent refresh (the
	// statistics' estimate of live rows), for the churn ratio.
	Rows         int64
	RefreshCount int64
	// Err is the refresh's failure, nil on success.
	Err error
	// Recorded is true when the outcome, success or failure, is durably in
	// the refresh log. A failure that could not be recorded must be retried
	// before the slot may pass the changes it covers.
	Recorded bool
	// PlainReason says why an auto-mode refresh could not be concurrent.
	PlainReason string
	// Maintained is what a maintenance did (Request.Maintenance).
	Maintained *maintain.Result
}

// advisoryLockClass is the first key of the per-view advisory locks
// ("mvr\x00" as an int4), so they do not collide with the application's
// single-key locks.
const advisoryLockClass int32 = 0x6d767200

// ErrViewBusy means another session holds the view's advisory lock past
// lock_timeout: another instance refreshing it during a takeover. The
// failure is not recorded, so that the work keeps its hold on the slot, and
// the other instance's refresh, whose snapshot may be older than the
// changes at hand, cannot pass for this one.
var ErrViewBusy = errors.New("another session is refreshing the view (its advisory lock is held)")

// ErrNotConcurrent means concurrently: always was configured for a view that
// cannot be refreshed concurrently.
var ErrNotConcurrent = errors.New("cannot refresh concurrently")

// Refresh refreshes the view and records the outcome. The log row is written
// in the refresh's own transaction, so the log never claims a refresh that
// did not commit.
func (r *Refresher) Refresh(ctx context.Context, req Request) Outcome {
	out := Outcome{StartedAt: time.Now(), LSN: req.LSN}
	err := r.refresh(ctx, req, &out)
	out.FinishedAt = time.Now()
	if err == nil {
		out.Recorded = !out.Deferred
		return out
	}
	out.Err = fmt.Errorf("refresh %s: %w", req.View.Name, err)
	out.RowsInserted, out.RowsDeleted = nil, nil
	if errors.Is(err, ErrViewBusy) {
		return out
	}
	if recErr := r.log.recordFailure(ctx, r.pool, req.View.Name, out.Err, out.StartedAt); recErr != nil {
		out.Err = errors.Join(out.Err, recErr)
	} else {
		out.Recorded = true
	}
	return out
}

func (r *Refresher) refresh(ctx context.Context, req Request, out *Outcome) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op

	if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
		millis(r.lockTimeout), millis(r.statementTimeout)); err != nil {
		return fmt.Errorf("set timeouts: %w", err)
	}
	// Two instances overlapping during a takeover never refresh one view at
	// once: the second waits here (within lock_timeout), then refreshes
	// again, which is harmless.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", advisoryLockClass, req.View.Name); err != nil {
		switch SQLState(err) {
		case pgerrcode.LockNotAvailable, pgerrcode.QueryCanceled: // lock_timeout, statement_timeout
			return fmt.Errorf("take the view's advisory lock: %w: %w", ErrViewBusy, err)
		}
		return fmt.Errorf("take the view's advisory lock: %w", err)
	}
	// After the lock, whose wait can be long, and before the REFRESH, whose
	// snapshot sees at least what this one does.
	snap, err := currentSnapshot(ctx, tx)
	if err != nil {
		return err
	}
	if out.WaitsFor = snap.oldestRunning(req.Barrier); out.WaitsFor != 0 {
		out.Deferred = true
		return nil
	}
	v := snap.check(req.Txns, req.TxnsFrom)
	out.VisibleBefore = v.visibleBefore
	if v.unseen != 0 {
		out.Unseen, out.UnseenTxn = v.unseen, v.unseenTxn
		if req.Deferrable && !v.sawOwn {
			out.Deferred = true
			return nil
		}
		// The slot holds the unseen commits: the refresh includes for sure
		// only what came before the oldest of them (commit order is
		// sequence order).
		out.LSN = v.unseenTxn.CommitLSN
	}
	concurrently := true // a maintenance never blocks readers
	if req.Maintenance != nil {
		err = maintainView(ctx, tx, req, out)
	} else {
		concurrently, err = refreshView(ctx, tx, req, out)
	}
	if err != nil {
		return err
	}
	if err := r.log.passOnDebt(ctx, tx, req.View.Name, req.Dependents); err != nil {
		return err
	}
	if out.RefreshCount, err = r.log.recordSuccess(ctx, tx, req.View, out, time.Since(out.StartedAt), concurrently, snap.text); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// refreshView runs REFRESH MATERIALIZED VIEW, CONCURRENTLY when it can.
func refreshView(ctx context.Context, tx pgx.Tx, req Request, out *Outcome) (concurrently bool, err error) {
	before, err := readViewState(ctx, tx, req.View.OID)
	if err != nil {
		return false, err
	}
	concurrently, plainReason := decide(req.Mode, before.populated, before.uniqueIndex)
	if req.Mode == ModeConcurrently && !concurrently {
		return false, fmt.Errorf("%w: %s (concurrently: always)", ErrNotConcurrent, plainReason)
	}
	out.Concurrently, out.PlainReason = concurrently, plainReason

	sql := "REFRESH MATERIALIZED VIEW "
	if concurrently {
		sql += "CONCURRENTLY "
	}
	if _, err := tx.Exec(ctx, sql+pgx.Identifier{req.View.Schema, req.View.Relname}.Sanitize()); err != nil {
		return false, err
	}
	if concurrently {
		after, err := readViewState(ctx, tx, req.View.OID)
		if err != nil {
			return false, err
		}
		ins, del := after.inserted-before.inserted, after.deleted-before.deleted
		out.RowsInserted, out.RowsDeleted = &ins, &del
		if out.Rows, err = rowCount(ctx, tx, req.View, ins, del); err != nil {
			return false, err
		}
	}
	return concurrently, nil
}

// rowCount is the view's row count after a concurrent refresh that
// inserted ins and deleted del rows. The statistics' estimate lags, so when
// the refresh looks like a wholesale rewrite (the only case the churn ratio
// is about) the rows are counted; that refresh scanned everything anyway.
func rowCount(ctx context.Context, tx pgx.Tx, v *catalog.View, ins, del int64) (int64, error) {
	var est int64
	if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT n_live_tup FROM pg_stat_all_tables WHERE relid = $1), 0) + $2 - $3`,
		v.OID, ins, del).Scan(&est); err != nil {
		return 0, fmt.Errorf("read the view's row estimate: %w", err)
	}
	if ins < 10 || float64(ins) < 0.5*float64(est) {
		return max(est, ins), nil
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{v.Schema, v.Relname}.Sanitize()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the view's rows: %w", err)
	}
	return n, nil
}

// viewState is what a refresh reads of its view inside its transaction:
// whether it is populated and has a unique index CONCURRENTLY can use (both
// can change between discoveries), and its row counters of this
// transaction. Read before and after the refresh, the counters' difference
// is what the refresh did: earlier transactions of the backend may still be
// in them.
type viewState struct {
	populated, uniqueIndex bool
	inserted, deleted      int64
}

func readViewState(ctx context.Context, tx pgx.Tx, oid uint32) (viewState, error) {
	var st viewState
	err := tx.QueryRow(ctx, `
		SELECT c.relispopulated, `+catalog.UsableUniqueIndexSQL+`, coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_del, 0)
		FROM pg_class c LEFT JOIN pg_stat_xact_user_tables s ON s.relid = c.oid
		WHERE c.oid = $1`, oid).Scan(&st.populated, &st.uniqueIndex, &st.inserted, &st.deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, errors.New("the view no longer exists")
	}
	if err != nil {
		return st, fmt.Errorf("read row counters: %w", err)
	}
	return st, nil
}

func decide(mode Mode, populated, uniqueIndex bool) (concurrently bool, plainReason string) {
	switch {
	case mode == ModePlain:
		return false, "concurrently: never"
	case !populated:
		return false, "the view is not populated (CONCURRENTLY needs a populated view)"
	case !uniqueIndex:
		return false, "the view has no unique index on plain columns without a WHERE clause (CONCURRENTLY needs one)"
	}
	return true, ""
}

// SQLState returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}
