package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/events"
)

// runWatch prints refresh events as they arrive, until ctx ends.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("watch", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, watchKeys...)
	// The daemon's "" disables publishing; watch needs a server.
	fs.Lookup("nats-url").Usage = "NATS server `URL`; \"\" means " + nats.DefaultURL + " (env MVREFRESHER_NATS_URL)"
	// The spellings of before --nats-subject-prefix and --nats-stream.
	fs.Var(fs.Lookup("nats-subject-prefix").Value, "subject-prefix", "deprecated: use --nats-subject-prefix")
	fs.Var(fs.Lookup("nats-stream").Value, "stream", "deprecated: use --nats-stream")
	asJSON := fs.Bool("json", false, "print each event as published, one JSON document per line")
	view := fs.String("view", "", "only this view (schema.name)")
	schema := fs.String("schema", "", "only views in this schema")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := flags.LoadDatabaseOptional()
	if err != nil {
		return err
	}
	url, prefix, stream := cfg.NATS.URL, cfg.NATS.SubjectPrefix, cfg.NATS.Stream
	if url == "" {
		url = nats.DefaultURL
	}
	subject := prefix + ".*.>"
	var viewName string
	switch {
	case *view != "":
		s, n, err := config.ParseQualifiedName(*view)
		if err != nil {
			return fmt.Errorf("watch: --view: %w", err)
		}
		subject = prefix + ".*." + events.SubjectToken(s) + "." + events.SubjectToken(n)
		viewName = s + "." + n
	case *schema != "":
		subject = prefix + ".*." + events.SubjectToken(*schema) + ".*"
	}
	nc, err := nats.Connect(url, nats.Name("mvrefresher watch"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("watch: connect to NATS %s: %w", config.RedactURL(url), err)
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
	showLatest(ctx, nc, events.LatestBucket(stream), show, stderr)
	fmt.Fprintf(stderr, "watching %s on %s\n", subject, config.RedactURL(url))
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
	if e.Maintenance != "" && e.Groups != nil && e.RowsWritten != nil {
		rows = fmt.Sprintf("%d written", *e.RowsWritten)
		how := fmt.Sprintf("%s, %d group", e.Maintenance, *e.Groups)
		if *e.Groups != 1 {
			how += "s"
		}
		if e.FullReason != "" {
			how += " (" + e.FullReason + ")"
		}
		detail = how + ", " + detail
	}
	if e.Error != "" {
		detail = e.Error
	}
	fmt.Fprintf(w, "%-12s  %-6s  %-34s  %-7s  %7.1fms  %-13s  %s\n",
		e.FinishedAt.Local().Format("15:04:05.000"), e.Status, e.View, e.Reason, e.DurationMS, rows, detail)
}
