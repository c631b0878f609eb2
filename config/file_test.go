package config

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"
)

// designSample is the project design's sample configuration, verbatim:
// every key it shows must keep loading.
const designSample = `database_url: postgres://refresher@db:5432/app   # required
slot: mvrefresher                # replication slot (created if missing)
publication: mvrefresher         # publication (created/kept in sync with the sources)
schemas: [analytics]             # manage the MVs in these schemas; empty = all non-system schemas
debounce: 2s                     # quiet period after the last change before refreshing
max_wait: 30s                    # upper bound from the first pending change to the refresh start
min_interval: 0s                 # least time between two refreshes of one view
workers: 2                       # refreshes at once
lock_timeout: 10s                # for the REFRESH statement; 0 = none
statement_timeout: 0s            # 0 = none
refresh_log_table: public.mv_refresh_log
listen: 127.0.0.1:9188           # HTTP: /metrics /healthz /readyz ; "" disables
log_level: info                  # debug|info|warn|error
log_format: text                 # text|json (log/slog)
nats:
  url: ""                        # "" disables publishing
  subject_prefix: mvrefresher
  jetstream: false               # publish to a JetStream stream with dedup ids
  stream: MVREFRESHER
views:                           # per-view overrides, keyed by qualified name
  analytics.mv_revenue_summary:
    debounce: 5s
    max_wait: 2m
    min_interval: 1m
    concurrently: auto           # auto|always|never
    enabled: true
`

func ptr[T any](v T) *T { return &v }

func TestLoad_DesignSample(t *testing.T) {
	cfg, err := Load(writeFile(t, designSample), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DatabaseURL = testURL
	want.Schemas = []string{"analytics"}
	want.Views = map[string]View{"analytics.mv_revenue_summary": {
		Debounce:     ptr(5 * time.Second),
		MaxWait:      ptr(2 * time.Minute),
		MinInterval:  ptr(time.Minute),
		Concurrently: ConcurrentlyAuto,
		Enabled:      ptr(true),
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLoad_FileValues(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(Config) bool
	}{
		{"empty file", "", func(c Config) bool { return c.Workers == 2 }},
		{"comments only", "# nothing\n", func(c Config) bool { return c.Workers == 2 }},
		{"duration zero as integer", "debounce: 0\nmax_wait: 0", func(c Config) bool { return c.Debounce == 0 && c.MaxWait == 0 }},
		{"staleness targets", "max_staleness: 1m\nviews:\n  analytics.mv_x:\n    max_staleness: 20s", func(c Config) bool {
			return c.MaxStaleness == time.Minute && c.ViewSettings("analytics.mv_x").MaxStaleness == 20*time.Second &&
				c.ViewSettings("analytics.other").MaxStaleness == time.Minute
		}},
		{"refresh_every", "refresh_every: 1h\nviews:\n  analytics.mv_today:\n    refresh_every: 10s\n  analytics.mv_never:\n    refresh_every: 0", func(c Config) bool {
			return c.RefreshEvery == time.Hour && c.ViewSettings("analytics.mv_today").RefreshEvery == 10*time.Second &&
				c.ViewSettings("analytics.mv_never").RefreshEvery == 0 && c.ViewSettings("analytics.other").RefreshEvery == time.Hour
		}},
		{"schemas block list", "schemas:\n  - a\n  - B\n", func(c Config) bool { return reflect.DeepEqual(c.Schemas, []string{"a", "B"}) }},
		{"schemas null", "schemas:\n", func(c Config) bool { return len(c.Schemas) == 0 }},
		{"schemas scalar", "schemas: a, b", func(c Config) bool { return reflect.DeepEqual(c.Schemas, []string{"a", "b"}) }},
		{"listen disabled", `listen: ""`, func(c Config) bool { return c.Listen == "" }},
		{"nats null", "nats:\n", func(c Config) bool { return c.NATS.SubjectPrefix == "mvrefresher" }},
		{"jetstream", "nats: {jetstream: true, stream: S1, url: 'nats://n:4222'}", func(c Config) bool {
			return c.NATS.JetStream && c.NATS.Stream == "S1" && c.NATS.URL == "nats://n:4222"
		}},
		{"view without overrides", "views:\n  a.b:\n", func(c Config) bool {
			return c.Views["a.b"].Concurrently == ConcurrentlyAuto && c.Views["a.b"].Debounce == nil
		}},
		{"alias", "d: &d 3s\ndebounce: *d\n", nil}, // "d" is unknown: aliases are resolved, anchors are not keys
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(writeFile(t, "database_url: x=y\n"+tt.yaml), nil, nil)
			if tt.check == nil {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Fatalf("unexpected %+v", cfg)
			}
		})
	}
}

func TestLoad_FileErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "database_url: x=y\nslot: s\n\ndebounse: 2s\n",
			[]string{`line 4: unknown key "debounse" (did you mean "debounce"?)`}},
		{"unknown nats key", "database_url: x=y\nnats:\n  urll: x\n",
			[]string{`line 3: nats: unknown key "urll" (did you mean "url"?)`}},
		{"unknown view key", "database_url: x=y\nviews:\n  analytics.mv_x:\n    debouce: 1s\n",
			[]string{`line 4: views.analytics.mv_x: unknown key "debouce" (did you mean "debounce"?)`}},
		{"flat nested key", "database_url: x=y\nnats.url: x\n",
			[]string{`line 2: unknown key "nats.url" (write url: nested under nats:)`}},
		{"duplicate key", "database_url: x=y\nworkers: 2\nworkers: 3\n",
			[]string{`line 3: key "workers" is already set on line 2`}},
		{"invalid duration", "database_url: x=y\ndebounce: abc\n",
			[]string{`line 2: debounce: invalid duration "abc" (use Go syntax such as 2s, 500ms, 1m)`}},
		{"duration without unit", "database_url: x=y\nmax_wait: 30\n",
			[]string{`line 2: max_wait: invalid duration "30"`}},
		{"missing duration", "database_url: x=y\ndebounce:\n",
			[]string{`line 2: debounce: expected a duration such as 2s, got nothing`}},
		{"invalid integer", "database_url: x=y\nworkers: two\n", []string{`line 2: workers: invalid integer "two"`}},
		{"yaml 1.1 boolean", "database_url: x=y\nnats:\n  jetstream: yes\n",
			[]string{`line 3: nats.jetstream: invalid boolean "yes" (use true or false)`}},
		{"mapping for scalar", "database_url: x=y\nslot:\n  a: b\n", []string{`line 3: slot: expected a string, got a mapping`}},
		{"nats not a mapping", "database_url: x=y\nnats: nats://x\n", []string{`line 2: nats: expected a mapping`}},
		{"view not a mapping", "database_url: x=y\nviews:\n  a.b: 5s\n", []string{`line 3: views.a.b: expected a mapping of overrides`}},
		{"view duration", "database_url: x=y\nviews:\n  a.b:\n    max_wait: later\n",
			[]string{`line 4: views.a.b.max_wait: invalid duration "later"`}},
		{"view enabled", "database_url: x=y\nviews:\n  a.b:\n    enabled: off\n",
			[]string{`line 4: views.a.b.enabled: invalid boolean "off"`}},
		{"view concurrently", "database_url: x=y\nviews:\n  a.b:\n    concurrently: sometimes\n",
			[]string{`line 4: views.a.b.concurrently: invalid value "sometimes" (use auto, always or never)`}},
		{"max_wait < debounce names where debounce was set", "database_url: x=y\ndebounce: 1m\n",
			[]string{`line 2: max_wait (30s) must not be less than debounce (1m0s)`}},
		{"not a mapping", "- a\n- b\n", []string{`line 1: expected a mapping of keys`}},
		{"several at once", "database_url: x=y\nfoo: 1\nworkers: 0\nlog_level: verbose\nnats:\n  bar: 2\n", []string{
			`line 2: unknown key "foo"`,
			`line 3: workers: must be between 1 and 64 (got 0)`,
			`line 4: log_level: invalid value "verbose" (use debug, info, warn or error)`,
			`line 6: nats: unknown key "bar"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := Load(path, nil, nil)
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), "config file "+path+": "+w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "is required") {
				t.Errorf("database_url was set:\n%v", err)
			}
		})
	}
}

func TestLoad_FileReadErrors(t *testing.T) {
	_, err := Load("/nonexistent/mvrefresher.yaml", nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := writeFile(t, "database_url: [unclosed\n")
	if _, err := Load(path, nil, nil); err == nil || !strings.Contains(err.Error(), "config file "+path+": yaml:") {
		t.Fatalf("syntax error: %v", err)
	}
}

// A bad file value that a higher-precedence source replaces is still an
// error: the file is wrong, and would bite the next run without the override.
func TestLoad_FileErrorNotHiddenByOverride(t *testing.T) {
	path := writeFile(t, "database_url: x=y\ndebounce: abc\n")
	_, err := Load(path, envOf(map[string]string{"MVREFRESHER_DEBOUNCE": "1s"}), nil)
	if err == nil || !strings.Contains(err.Error(), "line 2: debounce") {
		t.Fatalf("got %v", err)
	}
}
