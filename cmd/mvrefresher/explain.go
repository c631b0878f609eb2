package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/inspect"
)

// runExplain is the dry run: what a change to a table, or a refresh of a
// view, refreshes, in which order.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("explain", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, explainKeys...)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	names, err := fs.parseNames(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return fs.misuse(fmt.Errorf("name one table or materialized view (got %d)", len(names)))
	}
	in, err := openInspector(ctx, "explain", flags)
	if err != nil {
		return err
	}
	defer in.Close()
	rep, err := in.Explain(ctx, names[0])
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printExplain(stdout, rep)
	return nil
}

func printExplain(w io.Writer, rep inspect.ExplainReport) {
	what := "a change to " + rep.Kind + " " + rep.Name
	if rep.Kind == "view" {
		what = "a refresh of " + rep.Name
	}
	switch {
	case rep.Problem != "":
		fmt.Fprintf(w, "%s is not managed: %s\n", rep.Name, rep.Problem)
		return
	case len(rep.Waves) == 0:
		fmt.Fprintf(w, "%s refreshes nothing: no managed view reads it\n", what)
		return
	}
	n := 0
	for _, wave := range rep.Waves {
		n += len(wave)
	}
	fmt.Fprintf(w, "%s refreshes %d view(s) in %d wave(s):\n", what, n, len(rep.Waves))
	for i, wave := range rep.Waves {
		fmt.Fprintf(w, "wave %d\n", i+1)
		for _, v := range wave {
			last := "never refreshed"
			if v.LastDurationMS != nil {
				last = fmt.Sprintf("last refresh %.0f ms", *v.LastDurationMS)
			}
			timing := fmt.Sprintf("debounce %s, max_wait %s", v.Debounce, v.MaxWait)
			if v.MaxStaleness != "" {
				timing = "max_staleness " + v.MaxStaleness + targetSource(v.View, v.MaxStalenessFrom)
			}
			fmt.Fprintf(w, "  %s: %s, min_interval %s, concurrently %s; %s\n",
				v.View, timing, v.MinInterval, v.Concurrently, last)
			if len(v.After) > 0 {
				fmt.Fprintf(w, "    after %s\n", strings.Join(v.After, ", "))
			}
			if m := v.Incremental; m != nil {
				fmt.Fprintf(w, "    %s\n", m.Summary())
				for _, s := range m.Sources {
					fmt.Fprintf(w, "      %s: %s\n", s.Table, s.Follows())
				}
			}
		}
	}
}

// targetSource says where an effective target comes from, when not from the
// view itself.
func targetSource(view, from string) string {
	if from == view {
		return ""
	}
	return " (so that " + from + " meets its own)"
}
