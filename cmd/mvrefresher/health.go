package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealth asks a running daemon's /healthz, for container health checks
// in an image without a shell or curl.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("health", stdout, stderr)
	url := fs.String("url", "http://127.0.0.1:9188/healthz", "health endpoint to ask")
	if err := fs.parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close() //nolint:errcheck // read to the status only; nothing to lose
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
