package maintain

import (
	"slices"
	"strings"
)

// NamedKeys lists the key tuples n names, each as its values joined by
// "|" ("NULL" for NULL), sorted.
func NamedKeys(n *Named) []string {
	var out []string
	for _, k := range n.keys {
		vals := make([]string, len(k))
		for i, v := range k {
			vals[i] = "NULL"
			if v != nil {
				vals[i] = *v
			}
		}
		out = append(out, strings.Join(vals, "|"))
	}
	slices.Sort(out)
	return out
}
