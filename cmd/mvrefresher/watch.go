package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// runWatch prints refresh events as they arrive, until ctx ends.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", envOr("MVREFRESHER_NATS_URL", nats.DefaultURL), "NATS server (env MVREFRESHER_NATS_URL)")
	prefix := fs.String("subject-prefix", envOr("MVREFRESHER_NATS_SUBJECT_PREFIX", "mvrefresher"), "subject prefix the daemon publishes under")
	asJSON := fs.Bool("json", false, "print each event as published, one JSON document per line")
	view := fs.String("view", "", "only this view (schema.name)")
	schema := fs.String("schema", "", "only views in this schema")
	if err := fs.Parse(args); err != nil {
		return err
	}
	subject := *prefix + ".*.>"
	var viewName string
	switch {
	case *view != "":
		s, n, err := config.ParseQualifiedName(*view)
		if err != nil {
			return fmt.Errorf("watch: --view: %w", err)
		}
		subject = *prefix + ".*." + events.SubjectToken(s) + "." + events.SubjectToken(n)
		viewName = s + "." + n
	case *schema != "":
		subject = *prefix + ".*." + events.SubjectToken(*schema) + ".*"
	}
	nc, err := nats.Connect(*url, nats.Name("mvrefresher watch"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("watch: connect to NATS %s: %w", config.RedactURL(*url), err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("watch: subscribe to %s: %w", subject, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes right after
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	fmt.Fprintf(stderr, "watching %s on %s\n", subject, config.RedactURL(*url))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			var e events.Refresh
			if err := json.Unmarshal(m.Data, &e); err != nil || e.View == "" {
				continue // not a refresh event (slot health, say)
			}
			if viewName != "" {
				// Subject tokens replace odd characters; the payload is exact.
				if s, n, err := config.ParseQualifiedName(e.View); err != nil || s+"."+n != viewName {
					continue
				}
			}
			if *asJSON {
				fmt.Fprintf(stdout, "%s\n", m.Data)
			} else {
				printEvent(stdout, e)
			}
		}
	}
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// printEvent renders an event as one readable line.
func printEvent(w io.Writer, e events.Refresh) {
	rows := "(plain)"
	if e.RowsInserted != nil && e.RowsDeleted != nil {
		rows = fmt.Sprintf("+%d/-%d", *e.RowsInserted, *e.RowsDeleted)
	}
	detail := fmt.Sprintf("%d changes, staleness %.1fs", e.Changes, e.StalenessMS/1000)
	if e.Reason == events.ReasonStartup {
		detail = "first refresh after start"
	}
	if e.Error != "" {
		detail = e.Error
	}
	fmt.Fprintf(w, "%-12s  %-6s  %-34s  %-7s  %7.1fms  %-13s  %s\n",
		e.FinishedAt.Local().Format("15:04:05.000"), e.Status, e.View, e.Reason, e.DurationMS, rows, detail)
}
