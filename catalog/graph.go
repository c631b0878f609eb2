package catalog

import (
	"slices"
	"strings"
)

// Edge is one relation reading another directly.
type Edge struct {
	From, To         string
	FromKind, ToKind byte
}

// Node kinds in a Graph.
const (
	NodeTable     = "table"     // a table a view reads
	NodeView      = "view"      // a plain view in between
	NodeManaged   = "managed"   // a managed materialized view
	NodeUnmanaged = "unmanaged" // a materialized view that is not managed
)

// Node is a relation in the graph.
type Node struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Problem says why an unmanaged view is not managed.
	Problem string `json:"problem,omitempty"`
}

// Graph is the dependency graph of the managed views: their sources, the
// plain views in between, and the materialized views not managed.
type Graph struct {
	Nodes []Node      `json:"nodes"`
	Edges [][2]string `json:"edges"` // {read, reader}
}

// Graph is what discovery walked: for a catalog made by New, the views'
// sources and bases.
func (c *Catalog) Graph() Graph {
	kinds := map[string]string{}
	problems := map[string][]string{}
	for _, p := range c.Excluded {
		problems[p.View] = append(problems[p.View], p.Code)
	}
	kindOf := func(name string, relkind byte) string {
		switch {
		case c.Views[name] != nil:
			return NodeManaged
		case relkind == KindMatview:
			return NodeUnmanaged
		case relkind == KindView:
			return NodeView
		}
		return NodeTable
	}
	var edges [][2]string
	addEdge := func(from, to string) {
		if e := [2]string{from, to}; !slices.Contains(edges, e) {
			edges = append(edges, e)
		}
	}
	if c.edges != nil {
		for _, es := range c.edges {
			for _, e := range es {
				kinds[e.From], kinds[e.To] = kindOf(e.From, e.FromKind), kindOf(e.To, e.ToKind)
				addEdge(e.From, e.To)
			}
		}
	} else {
		for _, v := range c.Views {
			kinds[v.Name] = NodeManaged
			for _, t := range v.Sources {
				kinds[t.Name] = NodeTable
				addEdge(t.Name, v.Name)
			}
			for _, b := range v.Bases {
				addEdge(b, v.Name)
			}
		}
	}
	for name := range c.Views {
		kinds[name] = NodeManaged
	}
	for name := range problems {
		kinds[name] = NodeUnmanaged
	}
	var g Graph
	for name, kind := range kinds {
		n := Node{Name: name, Kind: kind}
		if kind == NodeUnmanaged {
			n.Problem = strings.Join(problems[name], ", ")
			if n.Problem == "" {
				n.Problem = "not managed (outside the managed schemas, or disabled)"
			}
		}
		g.Nodes = append(g.Nodes, n)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(edges, func(a, b [2]string) int {
		if d := strings.Compare(a[0], b[0]); d != 0 {
			return d
		}
		return strings.Compare(a[1], b[1])
	})
	g.Edges = edges
	if g.Nodes == nil {
		g.Nodes = []Node{}
	}
	if g.Edges == nil {
		g.Edges = [][2]string{}
	}
	return g
}
