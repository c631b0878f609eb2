package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := Default()
	c.DatabaseURL = testURL
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" = valid
	}{
		{"defaults with database", func(*Config) {}, ""},
		{"key=value DSN", func(c *Config) { c.DatabaseURL = "host=db dbname=app password='a b'" }, ""},
		{"postgresql scheme", func(c *Config) { c.DatabaseURL = "postgresql:///app?host=/tmp" }, ""},
		{"other scheme", func(c *Config) { c.DatabaseURL = "mysql://u@db/app" }, `database_url: unsupported scheme "mysql"`},
		{"not a DSN", func(c *Config) { c.DatabaseURL = "db.example.com" }, "database_url: not a postgres:// URL or a key=value connection string"},
		{"unterminated DSN", func(c *Config) { c.DatabaseURL = "host=db dbname='app" }, `database_url: unterminated quoted value for "dbname"`},
		{"bad URL", func(c *Config) { c.DatabaseURL = "postgres://db:port/app" }, `database_url: invalid URL "postgres://db:port/app"`},
		{"slot upper case", func(c *Config) { c.Slot = "MySlot" }, `slot: invalid replication slot name "MySlot" (use 1 to 63 characters of lower-case letters, digits and underscores)`},
		{"slot dash", func(c *Config) { c.Slot = "my-slot" }, `slot: invalid replication slot name "my-slot"`},
		{"slot empty", func(c *Config) { c.Slot = "" }, `slot: invalid replication slot name ""`},
		{"slot too long", func(c *Config) { c.Slot = strings.Repeat("a", 64) }, "slot: invalid replication slot name"},
		{"slot 63", func(c *Config) { c.Slot = strings.Repeat("a", 63) }, ""},
		{"publication anything", func(c *Config) { c.Publication = `My "Pub" ü` }, ""},
		{"publication too long", func(c *Config) { c.Publication = strings.Repeat("ü", 32) }, "publication: invalid name"},
		{"publication empty", func(c *Config) { c.Publication = "" }, "publication: invalid name"},
		{"schema empty", func(c *Config) { c.Schemas = []string{"a", ""} }, "schemas: entry 2 is empty"},
		{"negative debounce", func(c *Config) { c.Debounce = -time.Second }, "debounce: must not be negative (got -1s)"},
		{"negative max_staleness", func(c *Config) { c.MaxStaleness = -time.Second }, "max_staleness: must not be negative (got -1s)"},
		{"negative shutdown", func(c *Config) { c.ShutdownTimeout = -1 }, "shutdown_timeout: must not be negative"},
		{"refresh_every 0 is never", func(c *Config) { c.RefreshEvery = 0 }, ""},
		{"refresh_every 1s", func(c *Config) { c.RefreshEvery = time.Second }, ""},
		{"refresh_every under 1s", func(c *Config) { c.RefreshEvery = 500 * time.Millisecond },
			"refresh_every: must be 0 (never) or at least 1s (got 500ms)"},
		{"refresh_every negative", func(c *Config) { c.RefreshEvery = -time.Second }, "refresh_every: must be 0 (never) or at least 1s (got -1s)"},
		{"view refresh_every under 1s", func(c *Config) { c.Views = map[string]View{"a.b": {RefreshEvery: ptr(time.Millisecond)}} },
			"views.a.b.refresh_every: must be 0 (never) or at least 1s (got 1ms)"},
		{"view refresh_every", func(c *Config) { c.Views = map[string]View{"a.b": {RefreshEvery: ptr(time.Minute)}} }, ""},
		{"zero discovery", func(c *Config) { c.DiscoveryInterval = 0 }, "discovery_interval: must be positive (got 0s)"},
		{"max_wait < debounce", func(c *Config) { c.Debounce, c.MaxWait = 10*time.Second, 5*time.Second },
			"max_wait (5s) must not be less than debounce (10s); use 0 for no upper bound"},
		{"max_wait 0 unbounded", func(c *Config) { c.Debounce, c.MaxWait = time.Hour, 0 }, ""},
		{"workers 0", func(c *Config) { c.Workers = 0 }, "workers: must be between 1 and 64 (got 0)"},
		{"workers 65", func(c *Config) { c.Workers = 65 }, "workers: must be between 1 and 64 (got 65)"},
		{"log table", func(c *Config) { c.RefreshLogTable = TableName{Schema: "a"} }, "refresh_log_table: the schema and the table name must not be empty"},
		{"listen bad", func(c *Config) { c.Listen = "9188" }, `listen: invalid address "9188"`},
		{"listen empty", func(c *Config) { c.Listen = "" }, ""},
		{"listen port only", func(c *Config) { c.Listen = ":9188" }, ""},
		{"log level", func(c *Config) { c.LogLevel = "warning" }, `log_level: invalid value "warning" (use debug, info, warn or error)`},
		{"log format", func(c *Config) { c.LogFormat = "logfmt" }, `log_format: invalid value "logfmt" (use text or json)`},
		{"subject empty", func(c *Config) { c.NATS.SubjectPrefix = "" }, "nats.subject_prefix: invalid value"},
		{"subject empty token", func(c *Config) { c.NATS.SubjectPrefix = "a..b" }, `nats.subject_prefix: invalid value "a..b"`},
		{"subject wildcard", func(c *Config) { c.NATS.SubjectPrefix = "a.*" }, "nats.subject_prefix: invalid value"},
		{"subject space", func(c *Config) { c.NATS.SubjectPrefix = "a b" }, "nats.subject_prefix: invalid value"},
		{"subject dotted", func(c *Config) { c.NATS.SubjectPrefix = "acme.mv-1" }, ""},
		{"stream ignored without jetstream", func(c *Config) { c.NATS.Stream = "a.b" }, ""},
		{"stream dot", func(c *Config) { c.NATS.JetStream, c.NATS.Stream = true, "a.b" }, `nats.stream: invalid stream name "a.b"`},
		{"stream empty", func(c *Config) { c.NATS.JetStream, c.NATS.Stream = true, "" }, `nats.stream: invalid stream name ""`},
		{"view name", func(c *Config) { c.Views = map[string]View{"mv_x": {}} }, `views: invalid name "mv_x": no schema`},
		{"view same", func(c *Config) { c.Views = map[string]View{"A.B": {}, "a.b": {}} }, `views: "A.B" and "a.b" name the same view`},
		{"quoted differs", func(c *Config) { c.Views = map[string]View{`"A".b`: {}, "a.b": {}} }, ""},
		{"view concurrently", func(c *Config) { c.Views = map[string]View{"a.b": {Concurrently: "yes"}} },
			`views.a.b.concurrently: invalid value "yes" (use auto, always or never)`},
		{"view negative", func(c *Config) { c.Views = map[string]View{"a.b": {MinInterval: ptr(-time.Second)}} },
			"views.a.b.min_interval: must not be negative (got -1s)"},
		{"view max_wait < global debounce", func(c *Config) { c.Views = map[string]View{"a.b": {MaxWait: ptr(time.Second)}} },
			"views.a.b: max_wait (1s) must not be less than debounce (2s)"},
		{"view debounce > global max_wait", func(c *Config) { c.Views = map[string]View{"a.b": {Debounce: ptr(time.Minute)}} },
			"views.a.b: max_wait (30s) must not be less than debounce (1m0s)"},
		{"view unbounded", func(c *Config) {
			c.Views = map[string]View{"a.b": {Debounce: ptr(time.Hour), MaxWait: ptr(time.Duration(0))}}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want %q, got %v", tt.want, err)
			}
		})
	}
}

func TestValidate_AllProblemsAtOnce(t *testing.T) {
	c := Config{} // everything wrong or missing
	err := c.Validate()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 8 {
		t.Fatalf("want every problem, got %v", err)
	}
	for _, key := range []string{"database_url", "slot", "publication", "discovery_interval", "workers", "refresh_log_table", "log_level", "log_format", "nats.subject_prefix"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%s not reported", key)
		}
	}
}

func TestLoad_PasswordNeverInErrors(t *testing.T) {
	const secret = "s3cr%zzEt"
	urls := []string{
		"postgres://u:" + secret + "@db:port/app",
		"postgres://u:" + secret + "@db/app?x=%zz",
		"postgres://u:" + secret + "@db/app",
		"mysql://u:" + secret + "@db/app",
		"postgres://db/app?password=" + secret + "&x=%zz",
		"host=db password=" + secret + " dbname='app",
		"host=db password='" + secret,
		secret,
	}
	for _, u := range urls {
		for _, env := range []map[string]string{
			{"DATABASE_URL": u},
			{"MVREFRESHER_DATABASE_URL": u},
		} {
			// Other mistakes too, so that every code path writes something.
			cfg := validConfig()
			cfg.DatabaseURL = u
			verr := cfg.Validate()
			_, lerr := Load(writeFile(t, "database_url: "+quoteYAML(u)+"\nworkers: 0\nfoo: 1\n"), envOf(env), nil)
			_, ferr := Load(writeFile(t, "database_url: "+quoteYAML(u)+"\nslot: [\n"), nil, nil)
			for _, err := range []error{verr, lerr, ferr} {
				if err != nil && strings.Contains(err.Error(), "s3cr") {
					t.Errorf("%q: password in error:\n%v", u, err)
				}
			}
		}
	}
	// A valid URL with a password is not an error at all.
	cfg := validConfig()
	cfg.DatabaseURL = "postgres://u:s3cr%40t@db/app"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func quoteYAML(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
