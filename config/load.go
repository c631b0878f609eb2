package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Flags are the command-line flags bound by BindFlags.
type Flags struct {
	config string
	values []*flagValue // in keyDefs order
}

// BindFlags binds --config, the path of the YAML file, and one flag for each
// of keys (--database-url, --max-wait, --nats-subject-prefix, ...; --schemas
// takes a comma-separated list), or for every key when none is named: the
// daemon reads them all, a command only the keys it uses, so that its -h
// lists no flag it would ignore. The file and the environment still set
// every key. Invalid values are rejected by fs.Parse, with the same
// messages as the file and the environment.
//
// Naming a key that does not exist is a mistake in the program, not in its
// input, and panics as flag.FlagSet.Var does for a flag bound twice.
func BindFlags(fs *flag.FlagSet, keys ...string) *Flags {
	f := &Flags{}
	fs.StringVar(&f.config, "config", "", "path of the YAML configuration `file`")
	bind := func(d *keyDef) {
		v := &flagValue{def: d}
		f.values = append(f.values, v)
		fs.Var(v, flagName(d.name), d.usage())
	}
	if len(keys) == 0 {
		for i := range keyDefs {
			bind(&keyDefs[i])
		}
		return f
	}
	for _, k := range keys {
		d := lookupKey(k)
		if d == nil {
			panic(fmt.Sprintf("config: BindFlags: no key %q", k))
		}
		bind(d)
	}
	return f
}

// ConfigPath is the value of --config ("" when not given).
func (f *Flags) ConfigPath() string {
	if f == nil {
		return ""
	}
	return f.config
}

// Load is Load(f.ConfigPath(), os.LookupEnv, f), for the commands.
func (f *Flags) Load() (Config, error) {
	return Load(f.ConfigPath(), os.LookupEnv, f)
}

// LoadDatabaseOptional is LoadDatabaseOptional(f.ConfigPath(),
// os.LookupEnv, f), for the commands that may do without the database.
func (f *Flags) LoadDatabaseOptional() (Config, error) {
	return LoadDatabaseOptional(f.ConfigPath(), os.LookupEnv, f)
}

// flagValue keeps the text of a flag rather than a parsed value: Load applies
// it with the same code as the environment, and only when it was given, so an
// unset flag never hides the file or the environment.
type flagValue struct {
	def *keyDef
	raw string
	set bool
}

func (v *flagValue) String() string {
	switch {
	case v == nil || v.def == nil: // flag's zero-value probe
		return ""
	case v.set:
		return v.raw
	}
	def := Default()
	return v.def.format(&def)
}

func (v *flagValue) Set(s string) error {
	var scratch Config
	if err := v.def.set(&scratch, s); err != nil {
		return err
	}
	v.raw, v.set = s, true
	return nil
}

// IsBoolFlag lets --nats-jetstream be given without a value.
func (v *flagValue) IsBoolFlag() bool { return v.def != nil && v.def.isBool() }

// Load builds the configuration: defaults, then the YAML file at path (if
// path != ""; a missing file is an error), then the environment as seen
// through lookupEnv (nil: none), then the flags explicitly set on f (nil:
// none). It then validates the result. Every problem found is returned at
// once, joined with errors.Join, each naming the key and where its value came
// from; the Config is only meaningful when the error is nil.
func Load(path string, lookupEnv func(string) (string, bool), f *Flags) (Config, error) {
	return load(path, lookupEnv, f, true)
}

// LoadDatabaseOptional is Load for a command that needs no database when
// given what it would read there (wait with --lsn): a missing database_url
// is no error, and DatabaseURL is then "". A malformed one still is.
func LoadDatabaseOptional(path string, lookupEnv func(string) (string, bool), f *Flags) (Config, error) {
	return load(path, lookupEnv, f, false)
}

func load(path string, lookupEnv func(string) (string, bool), f *Flags, requireDatabase bool) (Config, error) {
	l := &loader{
		cfg:     Default(),
		sources: map[string]string{},
		failed:  map[string]bool{},
	}
	if path != "" {
		// Unreadable or not YAML at all: nothing else in it can be trusted.
		if err := l.loadFile(path); err != nil {
			return Config{}, err
		}
	}
	if lookupEnv != nil {
		l.loadEnv(lookupEnv)
	}
	if f != nil {
		l.loadFlags(f)
	}
	for name, v := range l.cfg.Views {
		if v.Concurrently == "" {
			v.Concurrently = ConcurrentlyAuto
			l.cfg.Views[name] = v
		}
	}
	errs := l.errs
	for _, p := range l.cfg.problems(requireDatabase) {
		if err := l.locate(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return l.cfg, nil
}

type loader struct {
	cfg  Config
	path string
	errs []error
	// sources says where each key's current value came from, for messages.
	sources map[string]string
	// failed holds the keys whose value could not be read.
	failed map[string]bool
}

// locate prefixes a validation problem with where its value came from, or
// returns nil when an unreadable value of the same key was already reported:
// judging the value left in its place would only add a misleading error.
func (l *loader) locate(p problem) error {
	for _, k := range p.keys {
		if covered(l.failed, k) != "" {
			return nil
		}
	}
	for _, k := range p.keys {
		if src := covered(l.sources, k); src != "" {
			return fmt.Errorf("%s: %w", l.sources[src], p.err)
		}
	}
	return p.err
}

func (l *loader) fail(key string, err error) {
	if key != "" {
		l.failed[key] = true
	}
	l.errs = append(l.errs, err)
}

// covered returns key or the nearest enclosing key ("views.a.b" for
// "views.a.b.debounce") present in m, or "".
func covered[V any](m map[string]V, key string) string {
	for k := key; k != ""; {
		if _, ok := m[k]; ok {
			return k
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return ""
}

func (l *loader) loadEnv(lookup func(string) (string, bool)) {
	for i := range keyDefs {
		d := &keyDefs[i]
		name := envName(d.name)
		val, ok := lookup(name)
		if !ok && d.name == "database_url" {
			// An empty DATABASE_URL is ignored: shells and CI often export
			// it empty, and it is only a fallback.
			if v, set := lookup("DATABASE_URL"); set && v != "" {
				name, val, ok = "DATABASE_URL", v, true
			}
		}
		if !ok {
			continue
		}
		src := "environment " + name
		if err := d.set(&l.cfg, val); err != nil {
			l.fail(d.name, fmt.Errorf("%s: %s: %w", src, d.name, err))
			continue
		}
		l.sources[d.name] = src
	}
}

func (l *loader) loadFlags(f *Flags) {
	for _, v := range f.values {
		if !v.set {
			continue
		}
		src := "flag --" + flagName(v.def.name)
		// Set already checked the text, so this cannot fail; the check
		// stays so that a future key type cannot fail silently.
		if err := v.def.set(&l.cfg, v.raw); err != nil {
			l.fail(v.def.name, fmt.Errorf("%s: %s: %w", src, v.def.name, err))
			continue
		}
		l.sources[v.def.name] = src
	}
}
