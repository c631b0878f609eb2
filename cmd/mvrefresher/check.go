package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
)

// runCheck checks what the daemon would refuse to start with (the server,
// the role's privileges, the configuration's views) and lints the managed
// views; exit status 1 when any finding is an error, so that it can gate a
// deployment or a migration in CI.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("check", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, checkKeys...)
	asJSON := fs.Bool("json", false, `print {"findings": [...]} as JSON`)
	if err := fs.parse(args); err != nil {
		return err
	}
	in, err := openInspector(ctx, "check", flags)
	if err != nil {
		return err
	}
	defer in.Close()
	findings, err := in.CheckSetup(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	stream, streamFindings, streamErr := in.CheckStream(ctx)
	findings = append(findings, streamFindings...)
	viewFindings, err := in.Check(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	// Grouped by view, those about no view first; catalog.Check puts a
	// view's errors before its warnings.
	findings = append(findings, viewFindings...)
	slices.SortStableFunc(findings, func(a, b catalog.Finding) int { return strings.Compare(a.View, b.View) })
	if *asJSON {
		if findings == nil {
			findings = []catalog.Finding{}
		}
		out := struct {
			Stream      *inspect.StreamStatus `json:"stream"`
			StreamError string                `json:"stream_error,omitempty"`
			Findings    []catalog.Finding     `json:"findings"`
		}{Findings: findings}
		if streamErr != nil {
			out.StreamError = streamErr.Error()
		} else {
			out.Stream = &stream
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		if streamErr != nil {
			fmt.Fprintf(stdout, "stream: error: %v\n", streamErr)
		} else {
			fmt.Fprintf(stdout, "stream: decoding on %s (PostgreSQL %s)\n", stream.DecodingOn, stream.Version)
		}
		printFindings(stdout, findings)
	}
	if streamErr != nil || catalog.HasErrors(findings) {
		return exitError{1}
	}
	return nil
}

func printFindings(w io.Writer, findings []catalog.Finding) {
	errs, warns := 0, 0
	last := ""
	for i, f := range findings {
		if i == 0 || f.View != last {
			header := f.View
			if header == "" { // not about one view: the server, the role, the configuration
				header = "setup"
			}
			fmt.Fprintln(w, header)
			last = f.View
		}
		fmt.Fprintf(w, "  %-7s  %s: %s\n", f.Severity, f.Code, f.Message)
		if f.Severity == catalog.SeverityError {
			errs++
		} else {
			warns++
		}
	}
	if len(findings) == 0 {
		fmt.Fprintln(w, "no problems found")
		return
	}
	fmt.Fprintf(w, "%d error(s), %d warning(s)\n", errs, warns)
}
