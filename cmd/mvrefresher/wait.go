package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/client"
	"github.com/mvrefresher/mvrefresher/config"
)

// runWait waits until a view is fresh through a WAL position: exit 0 when
// it is, 1 on timeout, 2 on an error.
func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("wait", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, waitKeys...)
	view := fs.String("view", "", "the view to wait for (schema.name); required")
	lsnText := fs.String("lsn", "", "the WAL position it must be fresh through: pg_current_wal_insert_lsn() read after the write's commit (default: read now on database_url)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait")
	daemonURL := fs.String("url", "", "the daemon's HTTP address (default: from listen)")
	if err := fs.parse(args); err != nil {
		return err
	}
	fail := func(err error) error {
		fmt.Fprintln(stderr, "mvrefresher wait:", err)
		return exitError{2}
	}
	switch {
	case *view == "":
		return fs.misuse(errors.New("--view is required"))
	case *timeout <= 0:
		return fs.misuse(fmt.Errorf("--timeout %s: want more than 0", *timeout))
	}
	// With --lsn, the database is not needed.
	cfg, err := flags.LoadDatabaseOptional()
	if err != nil {
		return fail(err)
	}
	base := *daemonURL
	if base == "" {
		if base, err = listenURL(cfg.Listen); err != nil {
			return fail(err)
		}
	}
	var lsn pglogrepl.LSN
	if *lsnText != "" {
		if lsn, err = pglogrepl.ParseLSN(*lsnText); err != nil {
			return fail(fmt.Errorf("--lsn %q: not a WAL position such as 0/16B3748", *lsnText))
		}
	} else if cfg.DatabaseURL == "" {
		return fail(errors.New("--lsn or database_url is required: without --lsn, wait reads pg_current_wal_insert_lsn() on database_url (set it in the config file, MVREFRESHER_DATABASE_URL, DATABASE_URL or --database-url)"))
	} else if lsn, err = currentLSN(ctx, cfg.DatabaseURL); err != nil {
		return fail(err)
	}
	st, err := client.New(base, nil).Wait(ctx, *view, lsn, *timeout)
	if errors.Is(err, client.ErrTimeout) {
		through := st.FreshThrough
		if through == "" {
			through = "nothing yet"
		}
		fmt.Fprintf(stderr, "mvrefresher wait: %s is not fresh through %s after %s (fresh through %s, pending %t)\n", *view, lsn, *timeout, through, st.Pending)
		return exitError{1}
	}
	var unreachable *url.Error
	if *daemonURL == "" && errors.As(err, &unreachable) {
		err = fmt.Errorf("%w (the daemon's address %s comes from listen; pass --url to name another)", err, base)
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s is fresh through %s (asked %s)\n", st.View, st.FreshThrough, lsn)
	return nil
}

// listenURL is the address a local client reaches a daemon listening on
// listen at.
func listenURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("listen is empty (the daemon serves no HTTP): pass --url")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func currentLSN(ctx context.Context, databaseURL string) (pglogrepl.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("read the WAL position: connect to database %s: %w", config.RedactURL(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // a read-only session
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	return lsn, nil
}
