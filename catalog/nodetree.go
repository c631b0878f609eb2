package catalog

import (
	"fmt"
	"strings"
)

// node is one parsed node of a pg_node_tree: {NAME :field value ...}. Field
// values are *node, []any (a list), string (an atom) or nil (<>). Fields
// are a slice, not a map: a node has a dozen, and a rule has thousands of
// nodes.
type node struct {
	name   string
	fields []field
}

type field struct {
	name  string
	value any
}

// get returns a field's value, or nil.
func (n *node) get(name string) any {
	for _, f := range n.fields {
		if f.name == name {
			return f.value
		}
	}
	return nil
}

// parseNodeTree parses PostgreSQL's text form of a node tree (what
// nodeToString writes, e.g. pg_rewrite.ev_action). Built-in functions such
// as now() are not in pg_depend; the rewrite rule is the only place they
// show.
func parseNodeTree(s string) (any, error) {
	p := &treeParser{toks: tokenize(s)}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("node tree: unexpected %q after the end", p.toks[p.pos])
	}
	return v, nil
}

// tokenize splits like pg_strtok: white space separates tokens, the
// characters (){} are tokens of their own, and a backslash makes the next
// character ordinary. Tokens are substrings of s where they can be (no
// backslash): thousands of views' rules are parsed at start.
func tokenize(s string) []string {
	toks := make([]string, 0, len(s)/4)
	start := -1      // start of the current token in s, -1 between tokens
	escaped := false // the current token has a backslash: unquote it
	flush := func(end int) {
		if start < 0 {
			return
		}
		tok := s[start:end]
		if escaped {
			var b strings.Builder
			for k := 0; k < len(tok); k++ {
				if tok[k] == '\\' && k+1 < len(tok) {
					k++
				}
				b.WriteByte(tok[k])
			}
			tok = b.String()
		}
		toks = append(toks, tok)
		start, escaped = -1, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if start < 0 {
				start = i
			}
			escaped = true
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush(i)
		case c == '(' || c == ')' || c == '{' || c == '}':
			flush(i)
			toks = append(toks, s[i:i+1])
		default:
			if start < 0 {
				start = i
			}
		}
	}
	flush(len(s))
	return toks
}

type treeParser struct {
	toks []string
	pos  int
}

func (p *treeParser) next() (string, error) {
	if p.pos >= len(p.toks) {
		return "", fmt.Errorf("node tree: unexpected end")
	}
	t := p.toks[p.pos]
	p.pos++
	return t, nil
}

func (p *treeParser) peek() string {
	if p.pos >= len(p.toks) {
		return ""
	}
	return p.toks[p.pos]
}

func (p *treeParser) value() (any, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	switch t {
	case "<>":
		return nil, nil
	case "{":
		return p.node()
	case "(":
		var list []any
		for p.peek() != ")" {
			if p.peek() == "" {
				return nil, fmt.Errorf("node tree: unterminated list")
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		p.pos++
		return list, nil
	case "[": // a Const's datum: raw bytes up to ]
		var b strings.Builder
		for p.peek() != "]" {
			t, err := p.next()
			if err != nil {
				return nil, err
			}
			b.WriteString(t + " ")
		}
		p.pos++
		return strings.TrimSpace(b.String()), nil
	}
	return t, nil
}

func (p *treeParser) node() (*node, error) {
	name, err := p.next()
	if err != nil {
		return nil, err
	}
	n := &node{name: name}
	for {
		t := p.peek()
		switch {
		case t == "}":
			p.pos++
			return n, nil
		case strings.HasPrefix(t, ":"):
			p.pos++
			if nt := p.peek(); strings.HasPrefix(nt, ":") || nt == "}" {
				n.fields = append(n.fields, field{t[1:], nil}) // a field with no value
				continue
			}
			// A Const's datum is written as a length followed by [ bytes ].
			if t == ":constvalue" && p.pos+1 < len(p.toks) && p.toks[p.pos+1] == "[" {
				p.pos++
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.fields = append(n.fields, field{t[1:], v})
		case t == "":
			return nil, fmt.Errorf("node tree: unterminated %s node", name)
		default:
			return nil, fmt.Errorf("node tree: unexpected %q in %s node", t, name)
		}
	}
}

// str returns a field's atom, or "".
func (n *node) str(field string) string {
	s, _ := n.get(field).(string)
	return s
}

// child returns a field's node, or nil.
func (n *node) child(field string) *node {
	c, _ := n.get(field).(*node)
	return c
}

// list returns a field's list, or nil.
func (n *node) list(field string) []any {
	l, _ := n.get(field).([]any)
	return l
}
