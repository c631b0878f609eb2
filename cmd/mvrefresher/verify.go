package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
)

// runVerify compares materialized views with their definitions; exit
// status 1 when one differs, so that it can gate a deploy or a test.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("verify", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, verifyKeys...)
	asJSON := fs.Bool("json", false, `print {"views": [...]} as JSON`)
	names, err := fs.parseNames(args)
	if err != nil {
		return err
	}
	in, err := openInspector(ctx, "verify", flags)
	if err != nil {
		return err
	}
	defer in.Close()
	results, err := in.Verify(ctx, names)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Views []inspect.Verification `json:"views"`
		}{results}); err != nil {
			return err
		}
	} else {
		printVerifications(stdout, results)
	}
	for _, v := range results {
		if !v.Equal {
			return exitError{1}
		}
	}
	return nil
}

func printVerifications(w io.Writer, results []inspect.Verification) {
	if len(results) == 0 {
		fmt.Fprintln(w, "no managed views")
	}
	for _, v := range results {
		switch {
		case v.Problem != "":
			fmt.Fprintf(w, "%s: cannot compare: %s\n", v.View, v.Problem)
		case v.Equal:
			fmt.Fprintf(w, "%s: equal to its definition (%s, %.0f ms)\n", v.View, rows(v.ViewRows), v.DurationMS)
		default:
			fmt.Fprintf(w, "%s: DIFFERS from its definition: %s missing, %d extra (%s by its definition, %d in the view; %.0f ms)\n",
				v.View, rows(v.Missing), v.Extra, rows(v.DefinitionRows), v.ViewRows, v.DurationMS)
			printRows(w, "missing (returned by the definition, not in the view)", v.MissingRows, v.Missing)
			printRows(w, "extra (in the view, not returned by the definition)", v.ExtraRows, v.Extra)
		}
	}
}

func printRows(w io.Writer, what string, rows []string, total int64) {
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "  %s:\n", what)
	for _, r := range rows {
		fmt.Fprintf(w, "    %s\n", r)
	}
	if more := total - int64(len(rows)); more > 0 {
		fmt.Fprintf(w, "    ... and %d more\n", more)
	}
}

func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}
