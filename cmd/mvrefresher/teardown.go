package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/replication"
)

// runTeardown drops the slot and the publication, never the refresh log or
// the views: the way to stop the slot from retaining WAL after removing
// mvrefresher.
func runTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("teardown", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, teardownKeys...)
	force := fs.Bool("force", false, "terminate the walsender of an active slot (a running mvrefresher) instead of refusing")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("teardown: connect to database: %w", err)
	}
	defer pool.Close()
	slotPool := pool
	if cfg.ReplicationURL != "" {
		if slotPool, err = pgxpool.New(ctx, cfg.ReplicationURL); err != nil {
			return fmt.Errorf("teardown: connect to replication_url: %w", err)
		}
		defer slotPool.Close()
	}
	res, err := replication.Teardown(ctx, pool, slotPool, cfg.Slot, cfg.Publication, *force)
	if err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	if res.SlotDropped {
		fmt.Fprintf(stdout, "dropped replication slot %s (it retained %d bytes of WAL)\n", cfg.Slot, res.RetainedBytes)
	} else {
		fmt.Fprintf(stdout, "no replication slot %s\n", cfg.Slot)
	}
	if res.PublicationDropped {
		fmt.Fprintf(stdout, "dropped publication %s\n", cfg.Publication)
	} else {
		fmt.Fprintf(stdout, "no publication %s\n", cfg.Publication)
	}
	fmt.Fprintf(stdout, "kept the refresh log %s and the views\n", cfg.RefreshLogTable)
	return nil
}
