package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
)

// runCheck lints the managed views; exit status 1 when any finding is an
// error, so that it can gate a migration in CI.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.BindFlags(fs)
	asJSON := fs.Bool("json", false, `print {"findings": [...]} as JSON`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	findings, err := daemon.Check(ctx, cfg)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if *asJSON {
		if findings == nil {
			findings = []catalog.Finding{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Findings []catalog.Finding `json:"findings"`
		}{findings}); err != nil {
			return err
		}
	} else {
		printFindings(stdout, findings)
	}
	if catalog.HasErrors(findings) {
		return exitError{1}
	}
	return nil
}

func printFindings(w io.Writer, findings []catalog.Finding) {
	errs, warns := 0, 0
	last := ""
	for _, f := range findings {
		if f.View != last {
			fmt.Fprintln(w, f.View)
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
