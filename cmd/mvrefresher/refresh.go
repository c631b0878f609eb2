package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/client"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
	"github.com/mvrefresher/mvrefresher/replication"
)

// runRefresh asks the running daemon for a refresh of views, with the
// logical message the daemon reads from its slot, so that the refresh is
// logged and announced like any other. With --wait it then waits until
// each view is fresh through the request: exit 0 when done, 1 on timeout,
// 2 on an error.
func runRefresh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("refresh", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, refreshKeys...)
	wait := fs.Bool("wait", false, "wait until the daemon has refreshed every view named")
	timeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long to wait for all of them")
	daemonURL := fs.String("url", "", "with --wait: the daemon's HTTP address (default: from listen)")
	views, err := fs.parseNames(args)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		fmt.Fprintln(stderr, "mvrefresher refresh:", err)
		return exitError{2}
	}
	switch {
	case len(views) == 0:
		return fs.misuse(errors.New("name at least one materialized view (schema.name)"))
	case *timeout <= 0:
		return fs.misuse(fmt.Errorf("--timeout %s: want more than 0", *timeout))
	}
	for _, v := range views {
		if _, _, err := config.ParseQualifiedName(v); err != nil {
			return fail(fmt.Errorf("%q: %w", v, err))
		}
	}
	cfg, err := flags.Load()
	if err != nil {
		return fail(err)
	}
	base := *daemonURL
	if *wait && base == "" {
		if base, err = listenURL(cfg.Listen); err != nil {
			return fail(err)
		}
	}
	lsn, err := requestRefresh(ctx, cfg.DatabaseURL, views)
	if err != nil {
		return fail(err)
	}
	if !*wait {
		fmt.Fprintf(stdout, "asked for a refresh of %d view(s) at %s; `mvrefresher wait --lsn %s --view V` waits for one\n", len(views), lsn, lsn)
		return nil
	}
	deadline := time.Now().Add(*timeout)
	mvr := client.New(base, nil)
	for _, v := range views {
		st, err := mvr.Wait(ctx, v, lsn, max(time.Until(deadline), time.Millisecond))
		if errors.Is(err, client.ErrTimeout) {
			why := fmt.Sprintf("pending %t, refreshing %t", st.Pending, st.Refreshing)
			if r := st.LastRefresh; r != nil && r.Status == events.StatusFailed {
				why = "its last refresh failed: " + r.Error
			}
			fmt.Fprintf(stderr, "mvrefresher refresh: %s is not refreshed through %s after %s (%s)\n", v, lsn, *timeout, why)
			return exitError{1}
		}
		var unreachable *url.Error
		if *daemonURL == "" && errors.As(err, &unreachable) {
			err = fmt.Errorf("%w (the daemon's address %s comes from listen; pass --url to name another)", err, base)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s is refreshed, fresh through %s\n", st.View, st.FreshThrough)
	}
	return nil
}

// requestRefresh emits, in one transaction on databaseURL, the message
// that asks the daemon for a refresh of each view, and returns a WAL
// position after its commit: a view fresh through it includes the refresh.
// A name that is no materialized view is refused before anything is sent.
func requestRefresh(ctx context.Context, databaseURL string, views []string) (pglogrepl.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("ask for a refresh: connect to database %s: %w", config.RedactURL(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // the transaction is committed or rolled back by then
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, v := range views {
			schema, name, _ := config.ParseQualifiedName(v) // parsed by the caller
			var isView bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_matviews WHERE schemaname = $1 AND matviewname = $2)`, schema, name).Scan(&isView)
			if err != nil {
				return fmt.Errorf("look up %s: %w", v, err)
			}
			if !isView {
				return fmt.Errorf("%s: no such materialized view", v)
			}
			if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", replication.MessagePrefix, v); err != nil {
				return fmt.Errorf("ask for a refresh of %s: %w", v, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("read the WAL position after the request: %w", err)
	}
	return lsn, nil
}
