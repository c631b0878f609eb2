package catalog

import "slices"

// Waves lists the views a refresh of views sets off, those views included:
// each with every managed view built on it, directly or not, in the order
// the daemon refreshes them. A view is in the wave after the latest of its
// bases among them; views of one wave may run at once.
func (c *Catalog) Waves(views []string) [][]string {
	affected := map[string]bool{}
	var add func(string)
	add = func(v string) {
		if affected[v] || c.Views[v] == nil {
			return
		}
		affected[v] = true
		for _, dep := range c.dependents[v] {
			add(dep)
		}
	}
	for _, v := range views {
		add(v)
	}
	wave := map[string]int{}
	var waveOf func(string) int
	waveOf = func(v string) int {
		if w, ok := wave[v]; ok {
			return w
		}
		w := 0
		for _, b := range c.Views[v].Bases {
			if affected[b] {
				w = max(w, waveOf(b)+1)
			}
		}
		wave[v] = w
		return w
	}
	var out [][]string
	for v := range affected {
		w := waveOf(v)
		for len(out) <= w {
			out = append(out, nil)
		}
		out[w] = append(out[w], v)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}
