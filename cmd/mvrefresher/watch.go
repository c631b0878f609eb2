package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	stream := fs.String("stream", envOr("MVREFRESHER_NATS_STREAM", "MVREFRESHER"), "JetStream stream whose latest-event bucket is shown first, if it exists")
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
	show := func(data []byte) {
		var e events.Refresh
		if err := json.Unmarshal(data, &e); err != nil || e.View == "" {
			return // not a refresh event (slot health, say)
		}
		// Subject tokens replace odd characters; the payload is exact.
		s, n, err := config.ParseQualifiedName(e.View)
		if err != nil || (viewName != "" && s+"."+n != viewName) || (*schema != "" && s != *schema) {
			return
		}
		if *asJSON {
			fmt.Fprintf(stdout, "%s\n", data)
		} else {
			printEvent(stdout, e)
		}
	}
	showLatest(ctx, nc, events.LatestBucket(*stream), show, stderr)
	fmt.Fprintf(stderr, "watching %s on %s\n", subject, config.RedactURL(*url))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			show(m.Data)
		}
	}
}

// showLatest prints the latest event of every view from the JetStream
// bucket, when there is one: a dashboard cache warming up learns each
// view's freshness at once instead of at its next refresh.
func showLatest(ctx context.Context, nc *nats.Conn, bucket string, show func([]byte), stderr io.Writer) {
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	lookup, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(lookup, bucket)
	if err != nil {
		return // no JetStream, or nats.jetstream is off
	}
	keys, err := kv.ListKeys(lookup)
	if err != nil {
		return
	}
	fmt.Fprintf(stderr, "latest event of each view (%s):\n", bucket)
	for key := range keys.Keys() {
		if entry, err := kv.Get(lookup, key); err == nil {
			show(entry.Value())
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
