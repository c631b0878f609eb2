package main

import (
	"fmt"
	"slices"
)

func printEligibility(views []maintainedView, why map[string]string) {
	fmt.Println("Views:")
	fmt.Println()
	for _, name := range incrementalViews {
		if slices.ContainsFunc(views, func(v maintainedView) bool { return v.name == name }) {
			fmt.Printf("- %s: maintained incrementally\n", name)
		} else {
			fmt.Printf("- %s: not maintained incrementally: %s\n", name, why[name])
		}
	}
	fmt.Println()
}

// printIncremental prints one line per view and case. The ratio is the
// concurrent refresh's server time over the maintenance's, at the median.
func printIncremental(cases []*incCase, source string) {
	fmt.Printf("Server time: %s. p99 is by nearest rank (of fewer than 100 batches, the largest); the rows of a replayed case are the same batches maintained a second time.\n\n", source)
	fmt.Println("| view | case | batches | maintain ms p50 / p99 | maintain wall ms p50 / p99 | CONCURRENTLY ms p50 (refreshes) | CONCURRENTLY wall ms p50 | ratio | rows written (max) | groups (max) | mode |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range cases {
		twin, twinWall, ratio := "-", "-", "-"
		if len(c.TwinDB) > 0 {
			twin = fmt.Sprintf("%.1f (%d)", quantile(c.TwinDB, 0.5), len(c.TwinDB))
			twinWall = fmt.Sprintf("%.1f", quantile(c.TwinWall, 0.5))
			ratio = ratioText(quantile(c.TwinDB, 0.5) / quantile(c.DB, 0.5))
		}
		modes := slices.Compact(slices.Sorted(slices.Values(c.Modes)))
		fmt.Printf("| %s | %s | %d | %.2f / %.2f | %.2f / %.2f | %s | %s | %s | %d | %d | %v |\n",
			c.View, c.Case, len(c.DB), quantile(c.DB, 0.5), quantile(c.DB, 0.99), quantile(c.Wall, 0.5), quantile(c.Wall, 0.99),
			twin, twinWall, ratio, slices.Max(c.Written), slices.Max(c.Groups), modes)
	}
}

// ratioText is "147x", or "0.35x" below 10.
func ratioText(r float64) string {
	if r >= 10 {
		return fmt.Sprintf("%.0fx", r)
	}
	return fmt.Sprintf("%.2fx", r)
}
