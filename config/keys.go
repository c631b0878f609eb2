package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key describes one scalar setting.
//
// Name is the key as written in the file ("nats.url" is written nested, as
// url under nats:). The environment variable is MVREFRESHER_ followed by the
// name upper-cased with '.' turned into '_'; the flag is -- followed by the
// name with '_' and '.' turned into '-'.
type Key struct {
	Name    string
	Default string // as it would be written in the file; lists comma-separated
	Help    string
}

// keyDef is the single table that drives the file, the environment, the flags
// and Keys, so that the four cannot disagree. The type of the field pointer
// decides how a value is parsed.
type keyDef struct {
	name  string
	help  string
	field func(*Config) any // *string, *time.Duration, *int, *bool, *[]string or *TableName
}

var keyDefs = []keyDef{
	{"database_url", "PostgreSQL connection: postgres:// URL or key=value string (required)",
		func(c *Config) any { return &c.DatabaseURL }},
	{"replication_url", "decode on this physical standby of database_url's server (PostgreSQL 16+); refreshes and the refresh log stay on database_url; empty = decode on database_url",
		func(c *Config) any { return &c.ReplicationURL }},
	{"slot", "logical replication slot (created if missing)",
		func(c *Config) any { return &c.Slot }},
	{"publication", "publication (created and kept in sync with the sources)",
		func(c *Config) any { return &c.Publication }},
	{"schemas", "manage the materialized views in these schemas (comma-separated); empty = all non-system schemas",
		func(c *Config) any { return &c.Schemas }},
	{"debounce", "quiet period after the last change before refreshing",
		func(c *Config) any { return &c.Debounce }},
	{"max_wait", "upper bound from the first pending change to the refresh start; 0 = none",
		func(c *Config) any { return &c.MaxWait }},
	{"min_interval", "least time between two refreshes of one view",
		func(c *Config) any { return &c.MinInterval }},
	{"max_staleness", "freshness target: longest time from a commit until a refresh including it has finished (replaces debounce and max_wait); 0 = none",
		func(c *Config) any { return &c.MaxStaleness }},
	{"refresh_every", "refresh a view this long after its last refresh started even without changes, for rows that depend on the time (now() in a WHERE clause); at least 1s, 0 = never",
		func(c *Config) any { return &c.RefreshEvery }},
	{"workers", "refreshes at once (1-64)",
		func(c *Config) any { return &c.Workers }},
	{"lock_timeout", "lock_timeout for the REFRESH statement; 0 = none",
		func(c *Config) any { return &c.LockTimeout }},
	{"statement_timeout", "statement_timeout for the REFRESH statement; 0 = none",
		func(c *Config) any { return &c.StatementTimeout }},
	{"refresh_log_table", "table recording the last refresh of every view (created if missing)",
		func(c *Config) any { return &c.RefreshLogTable }},
	{"listen", `HTTP address for /metrics, /healthz, /readyz and /views; "" disables`,
		func(c *Config) any { return &c.Listen }},
	{"log_level", "debug, info, warn or error",
		func(c *Config) any { return &c.LogLevel }},
	{"log_format", "text or json",
		func(c *Config) any { return &c.LogFormat }},
	{"shutdown_timeout", "on SIGTERM, how long running refreshes may finish",
		func(c *Config) any { return &c.ShutdownTimeout }},
	{"discovery_interval", "how often the catalog is re-read for new or dropped views and sources",
		func(c *Config) any { return &c.DiscoveryInterval }},
	{"slot_check_interval", "how often the slot's lag and retained WAL are read, exported and published",
		func(c *Config) any { return &c.SlotCheckInterval }},
	{"slot_warn_mb", "warn when the slot retains more than this many MB of WAL; 0 = never",
		func(c *Config) any { return &c.SlotWarnMB }},
	{"on_slot_lost", "recreate: drop and recreate an invalidated slot and refresh every view once; stop: exit with an error",
		func(c *Config) any { return &c.OnSlotLost }},
	{"nats.url", `NATS server URL; "" disables publishing`,
		func(c *Config) any { return &c.NATS.URL }},
	{"nats.subject_prefix", "first token(s) of every subject published",
		func(c *Config) any { return &c.NATS.SubjectPrefix }},
	{"nats.jetstream", "publish to a JetStream stream with dedup ids",
		func(c *Config) any { return &c.NATS.JetStream }},
	{"nats.stream", "JetStream stream name (with nats.jetstream)",
		func(c *Config) any { return &c.NATS.Stream }},
}

// Keys lists every scalar setting in the order of the documentation.
func Keys() []Key {
	def := Default()
	keys := make([]Key, len(keyDefs))
	for i, d := range keyDefs {
		keys[i] = Key{Name: d.name, Default: d.format(&def), Help: d.help}
	}
	return keys
}

func lookupKey(name string) *keyDef {
	for i := range keyDefs {
		if keyDefs[i].name == name {
			return &keyDefs[i]
		}
	}
	return nil
}

func envName(key string) string {
	return "MVREFRESHER_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func flagName(key string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(key)
}

// set parses s the same way for the file, the environment and the flags.
// The error does not name the key: each caller knows better where it came from.
func (d *keyDef) set(c *Config, s string) error {
	switch p := d.field(c).(type) {
	case *string:
		*p = s
	case *time.Duration:
		v, err := parseDuration(s)
		if err != nil {
			return err
		}
		*p = v
	case *int:
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		*p = v
	case *bool:
		v, err := parseBool(s)
		if err != nil {
			return err
		}
		*p = v
	case *[]string:
		*p = splitList(s)
	case *TableName:
		schema, name, err := ParseTableName(s)
		if err != nil {
			return err
		}
		*p = TableName{Schema: schema, Name: name}
	default:
		panic(fmt.Sprintf("config: key %s has an unsupported field type %T", d.name, p))
	}
	return nil
}

func (d *keyDef) format(c *Config) string {
	switch p := d.field(c).(type) {
	case *string:
		return *p
	case *time.Duration:
		return p.String()
	case *int:
		return strconv.Itoa(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *[]string:
		return strings.Join(*p, ",")
	case *TableName:
		return p.String()
	default:
		panic(fmt.Sprintf("config: key %s has an unsupported field type %T", d.name, p))
	}
}

// expects names the kind of value a key takes, for type errors in the file.
func (d *keyDef) expects() string {
	switch d.field(&Config{}).(type) {
	case *time.Duration:
		return "a duration such as 2s"
	case *int:
		return "a whole number"
	case *bool:
		return "true or false"
	case *[]string:
		return "a list"
	case *TableName:
		return "a table name such as public.mv_refresh_log"
	default:
		return "a string"
	}
}

// usage is the flag's help text; the back-quoted word is what -help shows as
// the flag's argument.
func (d *keyDef) usage() string {
	arg := ""
	switch d.field(&Config{}).(type) {
	case *time.Duration:
		arg = "`duration`, "
	case *int:
		arg = "`n`, "
	case *[]string:
		arg = "`list`, "
	case *string:
		arg = "`string`, "
	case *TableName:
		arg = "`table`, "
	}
	return fmt.Sprintf("%s (%senv %s)", d.help, arg, envName(d.name))
}

func (d *keyDef) isBool() bool {
	_, ok := d.field(&Config{}).(*bool)
	return ok
}

func (d *keyDef) isString() bool {
	_, ok := d.field(&Config{}).(*string)
	return ok
}

func (d *keyDef) isList() bool {
	_, ok := d.field(&Config{}).(*[]string)
	return ok
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use Go syntax such as 2s, 500ms, 1m)", s)
	}
	return v, nil
}

// parseBool accepts only true and false (any case): YAML 1.1's yes/no/on/off
// and strconv's t/1 would make "enabled: no" mean different things to
// different readers.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q (use true or false)", s)
}

// splitList turns "a, b" into [a b]; "" is the empty list, which is how the
// environment and flags say "all schemas".
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// suggest returns ` (did you mean "x"?)` for the closest candidate within two
// edits, so that a typo in a key is fixed at a glance.
func suggest(name string, candidates []string) string {
	best := ClosestName(name, candidates, 2)
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// ClosestName returns the name among names closest to want within maxEdits
// edits (insertions, deletions, substitutions of a character), or "": the
// "did you mean" of a typo.
func ClosestName(want string, names []string, maxEdits int) string {
	best, bestDist := "", maxEdits+1
	for _, n := range names {
		if d := editDistance(want, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
