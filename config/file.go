package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The file is walked as a yaml.Node tree rather than decoded into a struct:
// that is what gives every message a line number, catches unknown and
// duplicated keys at every level, and lets the key table drive parsing.

func (l *loader) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	l.path = path
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == 0 || isNull(root) { // empty or comments only: all defaults
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: expected a mapping of keys (key: value), got %s", l.at(root.Line), kindName(root))
	}
	l.eachPair(root, "", func(k, v *yaml.Node) {
		switch k.Value {
		case "nats":
			l.natsSection(k, v)
		case "views":
			l.viewsSection(k, v)
		default:
			d := lookupKey(k.Value)
			if d == nil || strings.Contains(k.Value, ".") {
				l.unknownKey(k, "", topLevelNames())
				return
			}
			l.setNode(d, v)
		}
	})
	return nil
}

func (l *loader) natsSection(k, v *yaml.Node) {
	l.sources["nats"] = l.at(k.Line)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		l.fileErr(v.Line, "nats", fmt.Errorf("nats: expected a mapping (url, subject_prefix, jetstream, stream), got %s", kindName(v)))
		return
	}
	var names []string
	for _, d := range keyDefs {
		if n, ok := strings.CutPrefix(d.name, "nats."); ok {
			names = append(names, n)
		}
	}
	l.eachPair(v, "nats", func(fk, fv *yaml.Node) {
		d := lookupKey("nats." + fk.Value)
		if d == nil {
			l.unknownKey(fk, "nats", names)
			return
		}
		l.setNode(d, fv)
	})
}

func (l *loader) viewsSection(k, v *yaml.Node) {
	l.sources["views"] = l.at(k.Line)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		l.fileErr(v.Line, "views", fmt.Errorf("views: expected a mapping of qualified view names to overrides, got %s", kindName(v)))
		return
	}
	if l.cfg.Views == nil {
		l.cfg.Views = map[string]View{}
	}
	l.eachPair(v, "views", func(nk, nv *yaml.Node) {
		path := "views." + nk.Value
		l.sources[path] = l.at(nk.Line)
		var view View
		switch {
		case isNull(nv): // listed without overrides
		case nv.Kind != yaml.MappingNode:
			l.fileErr(nv.Line, path, fmt.Errorf("%s: expected a mapping of overrides (%s), got %s",
				path, strings.Join(viewFieldNames(), ", "), kindName(nv)))
			return
		default:
			l.eachPair(nv, path, func(fk, fv *yaml.Node) {
				l.viewField(&view, path, fk, fv)
			})
		}
		l.cfg.Views[nk.Value] = view
	})
}

type viewField struct {
	name string
	set  func(*View, string) error
}

func durationField(name string, field func(*View) **time.Duration) viewField {
	return viewField{name, func(v *View, s string) error {
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		*field(v) = &d
		return nil
	}}
}

var viewFields = []viewField{
	durationField("debounce", func(v *View) **time.Duration { return &v.Debounce }),
	durationField("max_wait", func(v *View) **time.Duration { return &v.MaxWait }),
	durationField("min_interval", func(v *View) **time.Duration { return &v.MinInterval }),
	durationField("max_staleness", func(v *View) **time.Duration { return &v.MaxStaleness }),
	durationField("refresh_every", func(v *View) **time.Duration { return &v.RefreshEvery }),
	// Checked by Validate, so that a Config built in code is checked too.
	{"concurrently", func(v *View, s string) error { v.Concurrently = Concurrently(s); return nil }},
	boolField("enabled", func(v *View) **bool { return &v.Enabled }),
	boolField("incremental", func(v *View) **bool { return &v.Incremental }),
}

func boolField(name string, field func(*View) **bool) viewField {
	return viewField{name, func(v *View, s string) error {
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		*field(v) = &b
		return nil
	}}
}

func viewFieldNames() []string {
	names := make([]string, len(viewFields))
	for i, f := range viewFields {
		names[i] = f.name
	}
	return names
}

func (l *loader) viewField(view *View, path string, k, v *yaml.Node) {
	key := path + "." + k.Value
	for _, f := range viewFields {
		if f.name != k.Value {
			continue
		}
		l.sources[key] = l.at(v.Line)
		s, err := scalarText(v, false)
		if err == nil {
			err = f.set(view, s)
		} else {
			err = fmt.Errorf("expected a value, %w", err)
		}
		if err != nil {
			l.fileErr(v.Line, key, fmt.Errorf("%s: %w", key, err))
		}
		return
	}
	l.unknownKey(k, path, viewFieldNames())
}

// setNode applies one file value to the key it belongs to.
func (l *loader) setNode(d *keyDef, v *yaml.Node) {
	var err error
	if d.isList() && v.Kind == yaml.SequenceNode {
		var items []string
		for _, item := range v.Content {
			s, ierr := scalarText(deref(item), true)
			if ierr != nil {
				err = fmt.Errorf("expected a list of names, %w", ierr)
				break
			}
			items = append(items, s)
		}
		if err == nil {
			*d.field(&l.cfg).(*[]string) = items
		}
	} else {
		var s string
		if s, err = scalarText(v, d.isList() || d.isString()); err == nil {
			err = d.set(&l.cfg, s)
		} else {
			err = fmt.Errorf("expected %s, %w", d.expects(), err)
		}
	}
	if err != nil {
		l.fileErr(v.Line, d.name, fmt.Errorf("%s: %w", d.name, err))
		return
	}
	l.sources[d.name] = l.at(v.Line)
}

// scalarText returns the text of a scalar. A null (key with no value, ~) is
// "" for string-like keys and an error for the others, where guessing a
// value would hide a mistake.
func scalarText(v *yaml.Node, nullIsEmpty bool) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("got %s", kindName(v))
	}
	if isNull(v) {
		if nullIsEmpty {
			return "", nil
		}
		return "", errors.New("got nothing")
	}
	return v.Value, nil
}

// eachPair calls fn for every key of a mapping, rejecting keys that are not
// plain names and keys given twice (yaml.v3 only checks that when decoding
// into Go values, and a silently ignored duplicate is a nasty surprise).
func (l *loader) eachPair(m *yaml.Node, path string, fn func(k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.fileErr(k.Line, path, fmt.Errorf("%skeys must be plain names, got %s", prefix(path), kindName(k)))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			l.fileErr(k.Line, join(path, k.Value), fmt.Errorf("%skey %q is already set on line %d", prefix(path), k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		fn(k, v)
	}
}

func (l *loader) unknownKey(k *yaml.Node, path string, candidates []string) {
	hint := suggest(k.Value, candidates)
	if hint == "" && path == "" && lookupKey(k.Value) != nil {
		section, field, _ := strings.Cut(k.Value, ".")
		hint = fmt.Sprintf(" (write %s: nested under %s:)", field, section)
	}
	l.fileErr(k.Line, "", fmt.Errorf("%sunknown key %q%s", prefix(path), k.Value, hint))
}

func (l *loader) fileErr(line int, key string, err error) {
	l.fail(key, fmt.Errorf("%s: %w", l.at(line), err))
}

func (l *loader) at(line int) string {
	return fmt.Sprintf("config file %s: line %d", l.path, line)
}

func topLevelNames() []string {
	names := []string{"nats", "views"}
	for _, d := range keyDefs {
		if !strings.Contains(d.name, ".") {
			names = append(names, d.name)
		}
	}
	return names
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		// Redacted because a misplaced connection string may land here.
		return fmt.Sprintf("%q", RedactURL(n.Value))
	}
	return "nothing"
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
