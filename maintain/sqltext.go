package maintain

import (
	"fmt"
	"strings"
)

// The maintenance statements are built from the view's definition as
// pg_get_viewdef prints it with only pg_catalog on the search path: one
// canonical spelling, every relation and function qualified, every
// non-column expression of GROUP BY in parentheses. The few operations
// below (find a top-level clause, split the output list, find where the
// FROM names a relation) need no more than tokens and their parenthesis
// depth.

type tokenKind int

const (
	tokWord   tokenKind = iota // a keyword or an unquoted identifier
	tokQuoted                  // a quoted identifier
	tokString                  // a string literal
	tokOther                   // a number, an operator, punctuation
)

type token struct {
	kind       tokenKind
	text       string // a word folded to lower case, a quoted identifier unquoted
	start, end int    // the token's bytes in the text
	depth      int    // parentheses open before it
}

func (t token) is(word string) bool { return t.kind == tokWord && t.text == word }

// ident reports whether t names identifier name.
func (t token) ident(name string) bool {
	return (t.kind == tokWord || t.kind == tokQuoted) && t.text == name
}

func tokenize(sql string) ([]token, error) {
	var toks []token
	depth := 0
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\''):
			start := i
			backslash := c != '\''
			if backslash {
				i++
			}
			i++
			for {
				if i >= len(sql) {
					return nil, fmt.Errorf("unterminated string at byte %d", start)
				}
				if backslash && sql[i] == '\\' {
					i += 2
					continue
				}
				if sql[i] == '\'' {
					if i+1 < len(sql) && sql[i+1] == '\'' {
						i += 2
						continue
					}
					i++
					break
				}
				i++
			}
			toks = append(toks, token{kind: tokString, text: sql[start:i], start: start, end: i, depth: depth})
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(sql) {
					return nil, fmt.Errorf("unterminated quoted identifier at byte %d", start)
				}
				if sql[i] == '"' {
					if i+1 < len(sql) && sql[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(sql[i])
				i++
			}
			toks = append(toks, token{kind: tokQuoted, text: b.String(), start: start, end: i, depth: depth})
		case isWordStart(c):
			start := i
			for i < len(sql) && isWordPart(sql[i]) {
				i++
			}
			toks = append(toks, token{kind: tokWord, text: strings.ToLower(sql[start:i]), start: start, end: i, depth: depth})
		case c == '(':
			toks = append(toks, token{kind: tokOther, text: "(", start: i, end: i + 1, depth: depth})
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ) at byte %d", i)
			}
			toks = append(toks, token{kind: tokOther, text: ")", start: i, end: i + 1, depth: depth})
			i++
		default:
			start := i
			i++
			if c != ',' && c != '.' && c != ';' && c != '[' && c != ']' {
				for i < len(sql) && strings.IndexByte("+-*/<>=~!@#%^&|`?:", sql[i]) >= 0 && strings.IndexByte("+-*/<>=~!@#%^&|`?:", c) >= 0 {
					i++
				}
				for i < len(sql) && c >= '0' && c <= '9' && (sql[i] == '.' || sql[i] >= '0' && sql[i] <= '9') {
					i++
				}
			}
			toks = append(toks, token{kind: tokOther, text: sql[start:i], start: start, end: i, depth: depth})
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced ( in the definition")
	}
	return toks, nil
}

func isWordStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isWordPart(c byte) bool { return isWordStart(c) || c == '$' || c >= '0' && c <= '9' }

// definition is a view's definition split into its top-level clauses.
type definition struct {
	text string
	toks []token
	// selectList, from and where are token ranges [start, end) of the
	// top-level clauses; where is empty when there is none. tail starts at
	// the first top-level clause after WHERE (GROUP BY ...), len(toks) when
	// there is none.
	selectList, from, where [2]int
	tail                    int
}

var clauseEnds = map[string]bool{"where": true, "group": true, "having": true, "window": true, "order": true, "limit": true, "offset": true, "fetch": true}

func parseDefinition(text string) (*definition, error) {
	text = strings.TrimRight(strings.TrimSpace(text), ";")
	toks, err := tokenize(text)
	if err != nil {
		return nil, fmt.Errorf("read the definition: %w", err)
	}
	d := &definition{text: text, toks: toks, tail: len(toks)}
	if len(toks) == 0 || !toks[0].is("select") {
		return nil, fmt.Errorf("read the definition: it does not start with SELECT")
	}
	fromAt, whereAt := -1, -1
	for i, t := range toks {
		if t.depth != 0 || t.kind != tokWord {
			continue
		}
		switch {
		case t.text == "from" && fromAt < 0:
			fromAt = i
		case fromAt >= 0 && t.text == "where" && whereAt < 0:
			whereAt = i
		case fromAt >= 0 && clauseEnds[t.text] && t.text != "where" && d.tail == len(toks):
			d.tail = i
		}
	}
	if fromAt < 0 {
		return nil, fmt.Errorf("read the definition: no FROM")
	}
	d.selectList = [2]int{1, fromAt}
	fromEnd := d.tail
	if whereAt >= 0 {
		fromEnd = whereAt
		d.where = [2]int{whereAt + 1, d.tail}
	}
	d.from = [2]int{fromAt + 1, fromEnd}
	return d, nil
}

// span is the text of tokens [r[0], r[1]).
func (d *definition) span(r [2]int) string {
	if r[0] >= r[1] {
		return ""
	}
	return d.text[d.toks[r[0]].start:d.toks[r[1]-1].end]
}

// outputs returns the expression of each output column, without its AS.
func (d *definition) outputs() []string {
	var out []string
	start := d.selectList[0]
	emit := func(end int) {
		if end-start >= 3 && d.toks[end-2].is("as") && d.toks[end-2].depth == 0 {
			end -= 2
		}
		out = append(out, d.span([2]int{start, end}))
	}
	for i := start; i < d.selectList[1]; i++ {
		if t := d.toks[i]; t.depth == 0 && t.text == "," && t.kind == tokOther {
			emit(i)
			start = i + 1
		}
	}
	emit(d.selectList[1])
	return out
}

// fromItem is where the FROM names a relation: the tokens of its name (and
// alias), and the name its columns are qualified with.
type fromItem struct {
	start, end int // token range of "schema.name [alias]"
	alias      string
}

// joinWords can follow a relation in FROM and are not its alias.
var joinWords = map[string]bool{"join": true, "left": true, "right": true, "full": true, "inner": true, "cross": true, "natural": true, "on": true, "using": true, "where": true, "group": true, "having": true, "window": true, "order": true, "limit": true, "offset": true, "fetch": true, "tablesample": true, "with": true}

// find returns where the definition names schema.name, which must be
// once, in the top-level FROM.
func (d *definition) find(schema, name string) (fromItem, error) {
	var found []int
	for i := 0; i+2 < len(d.toks); i++ {
		if d.toks[i].ident(schema) && d.toks[i+1].text == "." && d.toks[i+1].kind == tokOther && d.toks[i+2].ident(name) {
			found = append(found, i)
		}
	}
	if len(found) != 1 {
		return fromItem{}, fmt.Errorf("the definition names it %d times", len(found))
	}
	i := found[0]
	if i < d.from[0] || i >= d.from[1] {
		return fromItem{}, fmt.Errorf("the definition names it outside its FROM")
	}
	if i > 0 && d.toks[i-1].is("only") {
		return fromItem{}, fmt.Errorf("the definition reads it with ONLY")
	}
	item := fromItem{start: i, end: i + 3, alias: d.text[d.toks[i+2].start:d.toks[i+2].end]}
	if i+3 < len(d.toks) {
		next := d.toks[i+3]
		switch {
		case next.kind == tokQuoted || next.kind == tokWord && !joinWords[next.text]:
			item.end, item.alias = i+4, d.text[next.start:next.end]
			if i+4 < len(d.toks) && d.toks[i+4].text == "(" {
				return fromItem{}, fmt.Errorf("the definition renames its columns")
			}
		case next.text == "(":
			return fromItem{}, fmt.Errorf("the definition renames its columns")
		}
	}
	return item, nil
}

// replaced returns the definition with item replaced by replacement,
// under item's alias.
func (d *definition) replaced(item fromItem, replacement string) string {
	return d.text[:d.toks[item.start].start] + replacement + " " + item.alias + d.text[d.toks[item.end-1].end:]
}

// whereConjuncts returns the top-level conjuncts of the WHERE, each in
// parentheses: the arguments of its AND, which pg_get_viewdef prints in
// parentheses, or the WHERE whole when it has no top-level AND. nil
// without a WHERE.
func (d *definition) whereConjuncts() []string {
	w := d.where
	if w[0] >= w[1] {
		return nil
	}
	if !d.enclosed(w) {
		return []string{"(" + d.span(w) + ")"}
	}
	var ranges [][2]int
	start, depth := w[0]+1, d.toks[w[0]].depth+1
	for i := start; i < w[1]-1; i++ {
		if d.toks[i].is("and") && d.toks[i].depth == depth {
			ranges = append(ranges, [2]int{start, i})
			start = i + 1
		}
	}
	if len(ranges) == 0 {
		return []string{d.span(w)}
	}
	ranges = append(ranges, [2]int{start, w[1] - 1})
	out := make([]string, len(ranges))
	for i, r := range ranges {
		out[i] = d.span(r)
		if !d.enclosed(r) {
			out[i] = "(" + out[i] + ")"
		}
	}
	return out
}

// enclosed says whether tokens r are one parenthesized expression.
func (d *definition) enclosed(r [2]int) bool {
	open, closing := d.toks[r[0]], d.toks[r[1]-1]
	if r[1]-r[0] < 2 || open.text != "(" || open.kind != tokOther || closing.text != ")" || closing.depth != open.depth {
		return false
	}
	for i := r[0] + 1; i < r[1]-1; i++ {
		if d.toks[i].depth <= open.depth {
			return false
		}
	}
	return true
}
