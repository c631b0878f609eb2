package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("status", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, statusKeys...)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.parse(args); err != nil {
		return err
	}
	in, err := openInspector(ctx, "status", flags)
	if err != nil {
		return err
	}
	defer in.Close()
	rep, err := in.Status(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(stdout, rep, time.Now())
	return nil
}

func printStatus(w io.Writer, rep inspect.StatusReport, now time.Time) {
	if rep.Stream.DecodingOn != "" {
		fmt.Fprintf(w, "stream: decoding on %s\n", rep.Stream.DecodingOn)
	}
	s := rep.Slot
	switch {
	case !s.Exists && len(rep.SlotsInDatabase) > 0:
		fmt.Fprintf(w, "slot %s: does not exist in this database, which has: %s (is the slot setting right? else the first `mvrefresher run` creates it)\n",
			s.Name, strings.Join(rep.SlotsInDatabase, ", "))
	case !s.Exists:
		fmt.Fprintf(w, "slot %s: does not exist, nor any other logical slot in this database (created by the first `mvrefresher run`)\n", s.Name)
	default:
		state := "inactive (no daemon streams from it: it retains WAL)"
		if s.InactiveSince != nil {
			state = fmt.Sprintf("inactive for %s (no daemon streams from it: it retains WAL)", now.Sub(*s.InactiveSince).Round(time.Second))
		}
		if s.Active {
			state = fmt.Sprintf("active (walsender pid %d)", deref(s.ActivePID))
		}
		if deref(s.Failover) {
			state += ", failover slot"
		}
		fmt.Fprintf(w, "slot %s: %s\n  confirmed %s, server at %s, lag %s, retains %s, wal_status %s\n",
			s.Name, state, deref(s.ConfirmedFlushLSN), s.CurrentWALLSN, formatBytes(s.LagBytes), formatBytes(s.RetainedBytes), deref(s.WALStatus))
		if s.InvalidationReason != nil {
			fmt.Fprintf(w, "  invalidated by the server: %s (the next `mvrefresher run` recreates it, with on_slot_lost: recreate)\n", *s.InvalidationReason)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VIEW\tSTATUS\tLAST REFRESH\tREFRESHES\tCONCURRENTLY\tMAX STALENESS\tSOURCES\tDEPENDS ON")
	for _, v := range rep.Views {
		status, last, conc := "never refreshed", "-", "-"
		if v.Status != nil {
			status = *v.Status
		}
		if !v.Managed {
			status = "not managed"
		}
		if v.RefreshedAt != nil {
			last = now.Sub(*v.RefreshedAt).Round(time.Second).String() + " ago"
		}
		switch {
		case v.Concurrently == nil:
		case *v.Concurrently:
			conc = "yes"
		default:
			conc = "no"
		}
		target := "-"
		if v.MaxStaleness != "" {
			target = v.MaxStaleness
			if v.MaxStalenessFrom != v.View {
				target += " (for " + v.MaxStalenessFrom + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", v.View, status, last, v.RefreshCount, conc, target, join(v.Sources), join(v.DependsOn))
	}
	tw.Flush()
	for _, v := range rep.Views {
		if v.Incremental != nil {
			fmt.Fprintf(w, "\n%s: %s\n", v.View, v.Incremental.Summary())
		}
		if v.Problem != "" {
			fmt.Fprintf(w, "\n%s is not managed: %s\n", v.View, v.Problem)
		}
		if v.Error != nil && v.Status != nil && *v.Status == "failed" {
			fmt.Fprintf(w, "\n%s failed: %s\n", v.View, *v.Error)
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func formatBytes(n *int64) string {
	if n == nil {
		return "-"
	}
	const unit = 1024
	v := float64(*n)
	for _, u := range []string{"B", "kB", "MB", "GB"} {
		if v < unit || u == "GB" {
			if u == "B" {
				return fmt.Sprintf("%d B", *n)
			}
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= unit
	}
	return ""
}

func join(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}
