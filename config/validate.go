package config

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"
	"unicode"
)

// problem is one validation failure. keys (the offending key first, then any
// other key involved) let Load say where the values came from and drop
// problems with values it already reported as unreadable.
type problem struct {
	keys []string
	err  error
}

// Validate checks every setting and returns all problems at once, joined with
// errors.Join, each naming the key and what is allowed. No message contains
// the database password.
func (c Config) Validate() error {
	ps := c.problems(true)
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p.err
	}
	return errors.Join(errs...)
}

// problems lists what is wrong; a missing database_url only when
// requireDatabase.
func (c Config) problems(requireDatabase bool) []problem {
	var ps []problem
	add := func(key, format string, args ...any) {
		ps = append(ps, problem{[]string{key}, fmt.Errorf(format, args...)})
	}

	if c.DatabaseURL == "" {
		if requireDatabase {
			add("database_url", "database_url is required (set it in the config file, MVREFRESHER_DATABASE_URL, DATABASE_URL or --database-url)")
		}
	} else if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		add("database_url", "database_url: %w", err)
	}
	if c.ReplicationURL != "" {
		if err := checkDatabaseURL(c.ReplicationURL); err != nil {
			add("replication_url", "replication_url: %w", err)
		}
	}

	if !validSlotName(c.Slot) {
		add("slot", "slot: invalid replication slot name %q (use 1 to 63 characters of lower-case letters, digits and underscores)", c.Slot)
	}
	if c.Publication == "" || len(c.Publication) > 63 || strings.ContainsRune(c.Publication, 0) {
		add("publication", "publication: invalid name %q (use 1 to 63 bytes, no NUL)", c.Publication)
	}
	for i, s := range c.Schemas {
		if s == "" {
			add("schemas", "schemas: entry %d is empty (list schema names, or leave schemas empty for all non-system schemas)", i+1)
		}
	}

	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"debounce", c.Debounce},
		{"max_wait", c.MaxWait},
		{"min_interval", c.MinInterval},
		{"max_staleness", c.MaxStaleness},
		{"lock_timeout", c.LockTimeout},
		{"statement_timeout", c.StatementTimeout},
		{"shutdown_timeout", c.ShutdownTimeout},
	} {
		if d.v < 0 {
			add(d.key, "%s: must not be negative (got %s)", d.key, d.v)
		}
	}
	if err := validRefreshEvery(c.RefreshEvery); err != nil {
		add("refresh_every", "refresh_every: %w", err)
	}
	if c.OnSlotLost != OnSlotLostRecreate && c.OnSlotLost != OnSlotLostStop {
		add("on_slot_lost", "on_slot_lost: %q is not recreate or stop", c.OnSlotLost)
	}
	if c.SlotCheckInterval <= 0 {
		add("slot_check_interval", "slot_check_interval: must be positive (got %s)", c.SlotCheckInterval)
	}
	if c.SlotWarnMB < 0 {
		add("slot_warn_mb", "slot_warn_mb: must be 0 (never) or more (got %d)", c.SlotWarnMB)
	}
	if c.DiscoveryInterval <= 0 {
		add("discovery_interval", "discovery_interval: must be positive (got %s)", c.DiscoveryInterval)
	}
	if c.MaxWait > 0 && c.MaxWait < c.Debounce {
		ps = append(ps, problem{[]string{"max_wait", "debounce"}, fmt.Errorf(
			"max_wait (%s) must not be less than debounce (%s); use 0 for no upper bound", c.MaxWait, c.Debounce)})
	}

	if c.Workers < 1 || c.Workers > 64 {
		add("workers", "workers: must be between 1 and 64 (got %d)", c.Workers)
	}
	if t := c.RefreshLogTable; t.Schema == "" || t.Name == "" {
		add("refresh_log_table", "refresh_log_table: the schema and the table name must not be empty")
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			add("listen", `listen: invalid address %q (use host:port such as 127.0.0.1:9188, or "" to disable)`, c.Listen)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "log_level: invalid value %q (use debug, info, warn or error)", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		add("log_format", "log_format: invalid value %q (use text or json)", c.LogFormat)
	}

	if !validSubjectPrefix(c.NATS.SubjectPrefix) {
		add("nats.subject_prefix", `nats.subject_prefix: invalid value %q (use non-empty tokens separated by ".", without spaces, "*" or ">")`, c.NATS.SubjectPrefix)
	}
	if c.NATS.JetStream && !validStreamName(c.NATS.Stream) {
		add("nats.stream", `nats.stream: invalid stream name %q (required with nats.jetstream: true; no spaces, ".", "*", ">", "/" or "\")`, c.NATS.Stream)
	}

	return append(ps, c.viewProblems()...)
}

func (c Config) viewProblems() []problem {
	var ps []problem
	add := func(key, format string, args ...any) {
		ps = append(ps, problem{[]string{key}, fmt.Errorf(format, args...)})
	}
	keys := make([]string, 0, len(c.Views))
	for k := range c.Views {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable messages
	seen := map[[2]string]string{}
	for _, k := range keys {
		v, path := c.Views[k], "views."+k
		if schema, name, err := ParseQualifiedName(k); err != nil {
			add(path, "views: %w", err)
		} else if prev, dup := seen[[2]string{schema, name}]; dup {
			add(path, "views: %q and %q name the same view (unquoted names are folded to lower case)", prev, k)
		} else {
			seen[[2]string{schema, name}] = k
		}
		for _, d := range []struct {
			field string
			v     *time.Duration
		}{{"debounce", v.Debounce}, {"max_wait", v.MaxWait}, {"min_interval", v.MinInterval}, {"max_staleness", v.MaxStaleness}} {
			if d.v != nil && *d.v < 0 {
				add(path+"."+d.field, "%s.%s: must not be negative (got %s)", path, d.field, *d.v)
			}
		}
		if v.RefreshEvery != nil {
			if err := validRefreshEvery(*v.RefreshEvery); err != nil {
				add(path+".refresh_every", "%s.refresh_every: %w", path, err)
			}
		}
		// Only when the view changes one of the two: otherwise the global
		// check has already said it.
		if v.Debounce != nil || v.MaxWait != nil {
			eff := v.apply(ViewSettings{Debounce: c.Debounce, MaxWait: c.MaxWait})
			if eff.MaxWait > 0 && eff.MaxWait < eff.Debounce {
				add(path+".max_wait", "%s: max_wait (%s) must not be less than debounce (%s); use 0 for no upper bound", path, eff.MaxWait, eff.Debounce)
			}
		}
		switch v.Concurrently {
		case "", ConcurrentlyAuto, ConcurrentlyAlways, ConcurrentlyNever:
		default:
			add(path+".concurrently", "%s.concurrently: invalid value %q (use auto, always or never)", path, v.Concurrently)
		}
	}
	return ps
}

// minRefreshEvery is the shortest refresh_every: a view refreshed more
// often than every second on a timer is a view that should not be
// materialized.
const minRefreshEvery = time.Second

// validRefreshEvery accepts 0 (never) or a period of at least minRefreshEvery.
func validRefreshEvery(d time.Duration) error {
	if d != 0 && d < minRefreshEvery {
		return fmt.Errorf("must be 0 (never) or at least %s (got %s)", minRefreshEvery, d)
	}
	return nil
}

// validSlotName follows PostgreSQL's ReplicationSlotValidateName.
func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func validSubjectPrefix(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*>") || strings.IndexFunc(tok, unicode.IsSpace) >= 0 {
			return false
		}
	}
	return true
}

// validStreamName follows the NATS server's rules for stream names.
func validStreamName(s string) bool {
	return s != "" && !strings.ContainsAny(s, `.*>/\`) && strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) < 0
}
