package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
)

// runGraph prints the dependency graph of the managed views.
func runGraph(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("graph", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet, graphKeys...)
	format := fs.String("format", "dot", "dot (Graphviz), mermaid or json")
	if err := fs.parse(args); err != nil {
		return err
	}
	write, ok := map[string]func(io.Writer, catalog.Graph) error{"dot": writeDot, "mermaid": writeMermaid, "json": writeGraphJSON}[*format]
	if !ok {
		return fs.misuse(fmt.Errorf("unknown format %q (use dot, mermaid or json)", *format))
	}
	in, err := openInspector(ctx, "graph", flags)
	if err != nil {
		return err
	}
	defer in.Close()
	return write(stdout, in.Graph())
}

func writeGraphJSON(w io.Writer, g catalog.Graph) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(g)
}

// label is a node's text: its name, and why an unmanaged view is not managed.
func label(n catalog.Node) string {
	if n.Problem != "" {
		return n.Name + " (" + n.Problem + ")"
	}
	return n.Name
}

func writeDot(w io.Writer, g catalog.Graph) error {
	shape := map[string]string{
		catalog.NodeTable:     "shape=cylinder",
		catalog.NodeView:      "shape=box, style=dashed",
		catalog.NodeManaged:   "shape=box, style=\"rounded,filled\", fillcolor=\"#d9ead3\"",
		catalog.NodeUnmanaged: "shape=box, style=\"rounded,filled\", fillcolor=\"#f4cccc\"",
	}
	var b strings.Builder
	b.WriteString("digraph mvrefresher {\n  rankdir=LR;\n")
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "  %s [label=%s, %s];\n", strconv.Quote(n.Name), strconv.Quote(label(n)), shape[n.Kind])
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s -> %s;\n", strconv.Quote(e[0]), strconv.Quote(e[1]))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeMermaid(w io.Writer, g catalog.Graph) error {
	ids := map[string]string{}
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for i, n := range g.Nodes {
		id := fmt.Sprintf("n%d", i)
		ids[n.Name] = id
		text := strings.ReplaceAll(label(n), `"`, "#quot;")
		switch n.Kind {
		case catalog.NodeTable:
			fmt.Fprintf(&b, "  %s[(\"%s\")]\n", id, text)
		case catalog.NodeView:
			fmt.Fprintf(&b, "  %s[/\"%s\"/]\n", id, text)
		default:
			fmt.Fprintf(&b, "  %s(\"%s\"):::%s\n", id, text, n.Kind)
		}
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s --> %s\n", ids[e[0]], ids[e[1]])
	}
	b.WriteString("  classDef managed fill:#d9ead3\n  classDef unmanaged fill:#f4cccc\n")
	_, err := io.WriteString(w, b.String())
	return err
}
