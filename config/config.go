// Package config loads and validates mvrefresher's configuration: defaults <
// file < environment < flags.
//
// Every scalar setting is a key (see Keys). The same key is written
// "nats.subject_prefix" in the YAML file (nested under nats:), as
// MVREFRESHER_NATS_SUBJECT_PREFIX in the environment and as
// --nats-subject-prefix on the command line. Per-view overrides (views:) can
// only be written in the file.
package config

import (
	"sort"
	"time"
)

// Concurrently says whether a view is refreshed with REFRESH ... CONCURRENTLY.
type Concurrently string

const (
	// ConcurrentlyAuto refreshes concurrently when the view allows it
	// (populated, usable unique index) and plainly otherwise, with a warning.
	ConcurrentlyAuto Concurrently = "auto"
	// ConcurrentlyAlways makes a view that cannot be refreshed concurrently an error.
	ConcurrentlyAlways Concurrently = "always"
	// ConcurrentlyNever always takes the ACCESS EXCLUSIVE lock of a plain refresh.
	ConcurrentlyNever Concurrently = "never"
)

// What to do when the server invalidated the slot (max_slot_wal_keep_size).
const (
	// OnSlotLostRecreate drops and recreates the slot and refreshes every
	// view once: changes in the lost WAL cannot be replayed, but a refresh
	// reads the tables as they are now.
	OnSlotLostRecreate = "recreate"
	// OnSlotLostStop exits with an error for an operator to look at.
	OnSlotLostStop = "stop"
)

// View holds per-view overrides; nil pointer = inherit the global value.
type View struct {
	Debounce     *time.Duration
	MaxWait      *time.Duration
	MinInterval  *time.Duration
	MaxStaleness *time.Duration
	RefreshEvery *time.Duration
	Concurrently Concurrently // "" after load is normalised to auto
	Enabled      *bool
	Incremental  *bool
}

// NATS configures event publishing.
type NATS struct {
	URL           string // "" disables publishing
	SubjectPrefix string
	JetStream     bool
	Stream        string
}

// TableName is a table's schema and name as the catalog spells them
// (pg_namespace.nspname, pg_class.relname): unquoted, case-folded where the
// user did not quote. Settings naming a table are parsed into one at load
// (see ParseTableName), so that a bad name fails there.
type TableName struct {
	Schema, Name string
}

// String is the name as SQL, each part quoted when it needs to be:
// ParseTableName reads it back as the same name.
func (t TableName) String() string { return quoteIdent(t.Schema) + "." + quoteIdent(t.Name) }

// Config is the whole configuration of the daemon and its commands.
type Config struct {
	DatabaseURL string
	// ReplicationURL is where the replication stream and the slot live: a
	// physical standby of DatabaseURL's server (PostgreSQL 16+), so that
	// decoding costs the primary nothing. Empty = DatabaseURL. See
	// StreamURL.
	ReplicationURL string
	Slot           string
	Publication    string
	// Schemas are exact catalog names (pg_namespace.nspname), not SQL
	// identifiers: they are not case-folded. Empty = all non-system schemas.
	Schemas     []string
	Debounce    time.Duration
	MaxWait     time.Duration // 0 = no upper bound
	MinInterval time.Duration
	// MaxStaleness is a freshness target: the longest time from a commit
	// until a refresh including it has finished. 0 = none (debounce and
	// max_wait decide).
	MaxStaleness time.Duration
	// RefreshEvery refreshes a view this long after its last refresh
	// started even without changes, for views whose rows depend on the
	// time (now() in a WHERE clause). 0 = never.
	RefreshEvery      time.Duration
	Workers           int
	LockTimeout       time.Duration // 0 = none
	StatementTimeout  time.Duration // 0 = none
	RefreshLogTable   TableName
	Listen            string        // "" disables the HTTP server
	LogLevel          string        // debug|info|warn|error
	LogFormat         string        // text|json
	ShutdownTimeout   time.Duration // grace for running refreshes on SIGTERM
	DiscoveryInterval time.Duration // how often the catalog is re-read
	OnSlotLost        string        // recreate|stop: what to do when the server invalidated the slot
	SlotCheckInterval time.Duration // how often the slot is read for metrics, slot events and warnings
	SlotWarnMB        int           // warn when the slot retains more WAL than this; 0 = never
	NATS              NATS
	// Views are keyed by the qualified view name as the user wrote it; use
	// ViewSettings rather than indexing, so that case folding and quoting
	// are applied.
	Views map[string]View
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Slot:              "mvrefresher",
		Publication:       "mvrefresher",
		Debounce:          2 * time.Second,
		MaxWait:           30 * time.Second,
		Workers:           2,
		LockTimeout:       10 * time.Second,
		RefreshLogTable:   TableName{Schema: "public", Name: "mv_refresh_log"},
		Listen:            "127.0.0.1:9188",
		LogLevel:          "info",
		LogFormat:         "text",
		ShutdownTimeout:   30 * time.Second,
		DiscoveryInterval: 10 * time.Second,
		OnSlotLost:        OnSlotLostRecreate,
		SlotCheckInterval: 10 * time.Second,
		SlotWarnMB:        1024,
		NATS: NATS{
			SubjectPrefix: "mvrefresher",
			Stream:        "MVREFRESHER",
		},
	}
}

// StreamURL is the connection the replication stream and the slot use:
// ReplicationURL, or DatabaseURL when that is empty.
func (c Config) StreamURL() string {
	if c.ReplicationURL != "" {
		return c.ReplicationURL
	}
	return c.DatabaseURL
}

// ViewSettings are the effective settings of one view.
type ViewSettings struct {
	Debounce, MaxWait, MinInterval, MaxStaleness, RefreshEvery time.Duration
	Concurrently                                               Concurrently
	Enabled                                                    bool
	// Incremental: the view is maintained incrementally (a table the
	// daemon keeps equal to the view's definition by recomputing only the
	// rows the changes touch).
	Incremental bool
}

// ViewSettings resolves the effective settings for a view (overrides
// applied). qualifiedName is SQL, as format('%I.%I', schema, view) writes it:
// the user's key "Analytics.MV_X" and the name analytics.mv_x match the same
// view, and "Sales"."MV X" matches only a view whose names keep that case. A
// name that does not parse gets the global settings.
func (c Config) ViewSettings(qualifiedName string) ViewSettings {
	s := ViewSettings{
		Debounce:     c.Debounce,
		MaxWait:      c.MaxWait,
		MinInterval:  c.MinInterval,
		MaxStaleness: c.MaxStaleness,
		RefreshEvery: c.RefreshEvery,
		Concurrently: ConcurrentlyAuto,
		Enabled:      true,
	}
	v, ok := c.lookupView(qualifiedName)
	if !ok {
		return s
	}
	return v.apply(s)
}

func (v View) apply(s ViewSettings) ViewSettings {
	if v.Debounce != nil {
		s.Debounce = *v.Debounce
	}
	if v.MaxWait != nil {
		s.MaxWait = *v.MaxWait
	}
	if v.MinInterval != nil {
		s.MinInterval = *v.MinInterval
	}
	if v.MaxStaleness != nil {
		s.MaxStaleness = *v.MaxStaleness
	}
	if v.RefreshEvery != nil {
		s.RefreshEvery = *v.RefreshEvery
	}
	if v.Concurrently != "" {
		s.Concurrently = v.Concurrently
	}
	if v.Enabled != nil {
		s.Enabled = *v.Enabled
	}
	if v.Incremental != nil {
		s.Incremental = *v.Incremental
	}
	return s
}

func (c Config) lookupView(qualifiedName string) (View, bool) {
	if len(c.Views) == 0 {
		return View{}, false
	}
	schema, name, err := ParseQualifiedName(qualifiedName)
	if err != nil {
		return View{}, false
	}
	if v, ok := c.Views[qualifiedName]; ok {
		return v, true
	}
	// Sorted so that, should two keys name the same view (Validate rejects
	// that), the answer does not change from one call to the next.
	keys := make([]string, 0, len(c.Views))
	for k := range c.Views {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, n, err := ParseQualifiedName(k); err == nil && s == schema && n == name {
			return c.Views[k], true
		}
	}
	return View{}, false
}
