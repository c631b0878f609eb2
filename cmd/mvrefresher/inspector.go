package main

import (
	"context"
	"fmt"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
)

// openInspector loads the configuration of the read-only command cmd and
// opens what its report reads; the caller closes it.
func openInspector(ctx context.Context, cmd string, flags *config.Flags) (*inspect.Inspector, error) {
	cfg, err := flags.Load()
	if err != nil {
		return nil, err
	}
	in, err := inspect.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return in, nil
}
