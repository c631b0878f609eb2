package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testURL = "postgres://refresher@db:5432/app"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mvrefresher.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func parseFlags(t *testing.T, args ...string) *Flags {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return f
}

func TestLoad_Defaults(t *testing.T) {
	cfg, err := Load("", envOf(map[string]string{"DATABASE_URL": testURL}), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DatabaseURL = testURL
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	d := Default()
	if d.Slot != "mvrefresher" || d.Publication != "mvrefresher" || len(d.Schemas) != 0 ||
		d.Debounce != 2*time.Second || d.MaxWait != 30*time.Second || d.MinInterval != 0 ||
		d.Workers != 2 || d.LockTimeout != 10*time.Second || d.StatementTimeout != 0 ||
		d.RefreshLogTable != (TableName{Schema: "public", Name: "mv_refresh_log"}) || d.Listen != "127.0.0.1:9188" ||
		d.LogLevel != "info" || d.LogFormat != "text" || d.ShutdownTimeout != 30*time.Second ||
		d.DiscoveryInterval != 10*time.Second || d.NATS.URL != "" ||
		d.NATS.SubjectPrefix != "mvrefresher" || d.NATS.JetStream || d.NATS.Stream != "MVREFRESHER" {
		t.Fatalf("unexpected defaults %+v", d)
	}
}

func TestLoad_DefaultsNeedDatabaseURL(t *testing.T) {
	_, err := Load("", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "database_url is required (set it in the config file, MVREFRESHER_DATABASE_URL, DATABASE_URL or --database-url)") {
		t.Fatalf("got %v", err)
	}
}

// A command that can do without the database (wait with --lsn) loads a
// configuration with no database_url, but not a malformed one.
func TestLoadDatabaseOptional(t *testing.T) {
	cfg, err := LoadDatabaseOptional("", nil, nil)
	if err != nil || cfg.DatabaseURL != "" || cfg.Listen != "127.0.0.1:9188" {
		t.Errorf("without database_url: %+v, %v; want the defaults and no error", cfg, err)
	}
	_, err = LoadDatabaseOptional(writeFile(t, "database_url: mysql://u@db/app\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), `database_url: unsupported scheme "mysql"`) {
		t.Errorf("with a malformed database_url: %v", err)
	}
}

func TestLoad_Precedence(t *testing.T) {
	file := writeFile(t, "database_url: postgres://file/db\nmax_wait: 40s\nnats:\n  url: nats://file:4222\n")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantURL string
		wantMax time.Duration
		wantNat string
	}{
		{"file beats default", nil, nil, "postgres://file/db", 40 * time.Second, "nats://file:4222"},
		{"DATABASE_URL beats file", map[string]string{"DATABASE_URL": "postgres://fallback/db"}, nil,
			"postgres://fallback/db", 40 * time.Second, "nats://file:4222"},
		{"empty DATABASE_URL is ignored", map[string]string{"DATABASE_URL": ""}, nil,
			"postgres://file/db", 40 * time.Second, "nats://file:4222"},
		{"MVREFRESHER_ beats DATABASE_URL", map[string]string{
			"DATABASE_URL": "postgres://fallback/db", "MVREFRESHER_DATABASE_URL": "postgres://env/db",
			"MVREFRESHER_MAX_WAIT": "50s", "MVREFRESHER_NATS_URL": "nats://env:4222"}, nil,
			"postgres://env/db", 50 * time.Second, "nats://env:4222"},
		{"empty MVREFRESHER_ value counts as set", map[string]string{"MVREFRESHER_NATS_URL": ""}, nil,
			"postgres://file/db", 40 * time.Second, ""},
		{"flag beats environment", map[string]string{
			"MVREFRESHER_DATABASE_URL": "postgres://env/db", "MVREFRESHER_MAX_WAIT": "50s", "MVREFRESHER_NATS_URL": "nats://env:4222"},
			[]string{"--database-url", "postgres://flag/db", "--max-wait=1m", "--nats-url="},
			"postgres://flag/db", time.Minute, ""},
		{"unset flags leave environment alone", map[string]string{"MVREFRESHER_MAX_WAIT": "50s"},
			[]string{"--workers=3"}, "postgres://file/db", 50 * time.Second, "nats://file:4222"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(file, envOf(tt.env), parseFlags(t, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DatabaseURL != tt.wantURL || cfg.MaxWait != tt.wantMax || cfg.NATS.URL != tt.wantNat {
				t.Fatalf("got url=%q max_wait=%s nats.url=%q", cfg.DatabaseURL, cfg.MaxWait, cfg.NATS.URL)
			}
		})
	}
}

func TestLoad_EnvironmentAndFlagTypes(t *testing.T) {
	env := map[string]string{
		"MVREFRESHER_DATABASE_URL":        testURL,
		"MVREFRESHER_SCHEMAS":             "analytics, sales",
		"MVREFRESHER_NATS_SUBJECT_PREFIX": "acme.mv",
		"MVREFRESHER_NATS_JETSTREAM":      "TRUE",
		"MVREFRESHER_WORKERS":             "8",
		"MVREFRESHER_REFRESH_LOG_TABLE":   `Ops."Refresh Log"`,
	}
	cfg, err := Load("", envOf(env), parseFlags(t, "--nats-jetstream=false", "--schemas", "a,b,c"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Schemas, []string{"a", "b", "c"}) || cfg.NATS.SubjectPrefix != "acme.mv" ||
		cfg.NATS.JetStream || cfg.Workers != 8 || cfg.RefreshLogTable != (TableName{Schema: "ops", Name: "Refresh Log"}) {
		t.Fatalf("got %+v", cfg)
	}
	cfg, err = Load("", envOf(env), parseFlags(t, "--nats-jetstream"))
	if err != nil || !cfg.NATS.JetStream || !reflect.DeepEqual(cfg.Schemas, []string{"analytics", "sales"}) {
		t.Fatalf("bare bool flag: %+v, %v", cfg, err)
	}
	env["MVREFRESHER_SCHEMAS"] = ""
	if cfg, err = Load("", envOf(env), nil); err != nil || len(cfg.Schemas) != 0 {
		t.Fatalf("empty schemas: %v, %v", cfg.Schemas, err)
	}
}

func TestLoad_EnvironmentErrors(t *testing.T) {
	_, err := Load("", envOf(map[string]string{
		"MVREFRESHER_DATABASE_URL":      testURL,
		"MVREFRESHER_MAX_WAIT":          "soon",
		"MVREFRESHER_WORKERS":           "many",
		"MVREFRESHER_NATS_JETSTREAM":    "yes",
		"MVREFRESHER_SLOT":              "Bad-Slot",
		"MVREFRESHER_REFRESH_LOG_TABLE": "a.b.c",
	}), nil)
	for _, want := range []string{
		`environment MVREFRESHER_MAX_WAIT: max_wait: invalid duration "soon" (use Go syntax such as 2s, 500ms, 1m)`,
		`environment MVREFRESHER_WORKERS: workers: invalid integer "many"`,
		`environment MVREFRESHER_NATS_JETSTREAM: nats.jetstream: invalid boolean "yes" (use true or false)`,
		`environment MVREFRESHER_SLOT: slot: invalid replication slot name "Bad-Slot"`,
		`environment MVREFRESHER_REFRESH_LOG_TABLE: refresh_log_table: invalid name "a.b.c"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// The unreadable max_wait must not also produce a max_wait < debounce error.
	if strings.Count(err.Error(), "max_wait") != 1 {
		t.Errorf("max_wait reported more than once:\n%v", err)
	}
}

func TestLoad_FlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--debounce=abc"}, {"--workers=x"}, {"--nats-jetstream=maybe"}} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		BindFlags(fs)
		err := fs.Parse(args)
		if err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%v: got %v", args, err)
		}
	}
	f := parseFlags(t, "--database-url", testURL, "--slot", "UPPER")
	_, err := Load("", nil, f)
	if err == nil || !strings.Contains(err.Error(), `flag --slot: slot: invalid replication slot name "UPPER"`) {
		t.Fatalf("got %v", err)
	}
}

func TestLoad_ConfigFlag(t *testing.T) {
	path := writeFile(t, "database_url: "+testURL+"\nworkers: 5\n")
	f := parseFlags(t, "--config", path)
	if f.ConfigPath() != path {
		t.Fatalf("ConfigPath = %q", f.ConfigPath())
	}
	cfg, err := Load(f.ConfigPath(), nil, f)
	if err != nil || cfg.Workers != 5 {
		t.Fatalf("got %d, %v", cfg.Workers, err)
	}
	var nilFlags *Flags
	if nilFlags.ConfigPath() != "" {
		t.Fatal("nil Flags must have no config path")
	}
}

// sampleValue returns a valid value different from the default for a field.
func sampleValue(p any) string {
	switch p.(type) {
	case *time.Duration:
		return "7s"
	case *int:
		return "7"
	case *bool:
		return "true"
	case *[]string:
		return "s1,s2"
	}
	return "x7"
}

// TestKeys_CoverEveryField proves the key table, and so the flags, the
// environment and Keys, reaches every scalar field exactly once.
func TestKeys_CoverEveryField(t *testing.T) {
	var fields []string
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(TableName{}) && f.Type != reflect.TypeOf(time.Duration(0)):
				walk(f.Type, path+f.Name+".")
			case f.Type.Kind() != reflect.Map:
				fields = append(fields, path+f.Name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")

	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	BindFlags(fs)
	keys := Keys()
	if len(keys) != len(fields) {
		t.Fatalf("%d keys for %d scalar fields %v", len(keys), len(fields), fields)
	}
	touched := map[string]string{}
	for _, k := range keys {
		fl := fs.Lookup(flagName(k.Name))
		if fl == nil {
			t.Fatalf("no flag for key %s", k.Name)
		}
		if k.Help == "" {
			t.Errorf("key %s has no help", k.Name)
		}
		if k.Default != fl.DefValue {
			t.Errorf("key %s: default %q, flag default %q", k.Name, k.Default, fl.DefValue)
		}
		before := Default()
		after := Default()
		d := lookupKey(k.Name)
		if err := d.set(&after, sampleValue(d.field(&after))); err != nil {
			t.Fatal(err)
		}
		changed := diffFields(reflect.ValueOf(before), reflect.ValueOf(after), "")
		if len(changed) != 1 {
			t.Fatalf("key %s changes fields %v", k.Name, changed)
		}
		if prev, dup := touched[changed[0]]; dup {
			t.Fatalf("keys %s and %s both set %s", prev, k.Name, changed[0])
		}
		touched[changed[0]] = k.Name
	}
	for _, f := range fields {
		if touched[f] == "" {
			t.Errorf("field %s has no key", f)
		}
	}
	for _, name := range []string{"config", "database-url", "nats-url", "max-wait", "nats-subject-prefix", "nats-jetstream"} {
		if fs.Lookup(name) == nil {
			t.Errorf("missing flag --%s", name)
		}
	}
	if envName("nats.subject_prefix") != "MVREFRESHER_NATS_SUBJECT_PREFIX" {
		t.Errorf("env name %s", envName("nats.subject_prefix"))
	}
}

func diffFields(a, b reflect.Value, path string) []string {
	var out []string
	for i := 0; i < a.NumField(); i++ {
		name := path + a.Type().Field(i).Name
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct && fa.Type() != reflect.TypeOf(TableName{}) {
			out = append(out, diffFields(fa, fb, name+".")...)
		} else if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, name)
		}
	}
	return out
}

func TestFlags_LoadUsesProcessEnvironment(t *testing.T) {
	t.Setenv("MVREFRESHER_DATABASE_URL", testURL)
	t.Setenv("MVREFRESHER_WORKERS", "4")
	path := writeFile(t, "workers: 3\nslot: from_file\n")
	cfg, err := parseFlags(t, "--config", path, "--slot", "from_flag").Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != testURL || cfg.Workers != 4 || cfg.Slot != "from_flag" {
		t.Fatalf("got %+v", cfg)
	}
}

func TestLoad_ReplicationURL(t *testing.T) {
	cfg, err := Load("", envOf(map[string]string{"MVREFRESHER_DATABASE_URL": testURL}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamURL() != testURL {
		t.Errorf("without replication_url the stream uses %q, want database_url %q", cfg.StreamURL(), testURL)
	}
	standby := "postgres://replica:5432/app"
	cfg, err = Load("", envOf(map[string]string{"MVREFRESHER_DATABASE_URL": testURL, "MVREFRESHER_REPLICATION_URL": standby}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamURL() != standby || cfg.DatabaseURL != testURL {
		t.Errorf("stream %q and database %q, want %q and %q", cfg.StreamURL(), cfg.DatabaseURL, standby, testURL)
	}
	_, err = Load("", envOf(map[string]string{"MVREFRESHER_DATABASE_URL": testURL, "MVREFRESHER_REPLICATION_URL": "mysql://replica/app"}), nil)
	if err == nil || !strings.Contains(err.Error(), "environment MVREFRESHER_REPLICATION_URL: replication_url: ") {
		t.Fatalf("a bad replication_url: got %v", err)
	}
}

func TestBindFlags_OnlyTheNamedKeys(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	f := BindFlags(fs, "database_url", "nats.subject_prefix")
	for _, name := range []string{"config", "database-url", "nats-subject-prefix"} {
		if fs.Lookup(name) == nil {
			t.Errorf("missing flag --%s", name)
		}
	}
	if fs.Lookup("workers") != nil {
		t.Error("--workers is bound though not named")
	}
	if err := fs.Parse([]string{"--workers", "3"}); err == nil {
		t.Error("an unbound flag was accepted")
	}
	if err := fs.Parse([]string{"--nats-subject-prefix", "app.mv"}); err != nil {
		t.Fatal(err)
	}
	// The environment still sets the keys that have no flag.
	cfg, err := Load("", envOf(map[string]string{"MVREFRESHER_DATABASE_URL": testURL, "MVREFRESHER_WORKERS": "5"}), f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.SubjectPrefix != "app.mv" || cfg.Workers != 5 {
		t.Errorf("got prefix %q and workers %d, want app.mv and 5", cfg.NATS.SubjectPrefix, cfg.Workers)
	}
}
