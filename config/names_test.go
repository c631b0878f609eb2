package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseQualifiedName(t *testing.T) {
	tests := []struct {
		in, schema, name, err string
	}{
		{in: "analytics.mv_x", schema: "analytics", name: "mv_x"},
		{in: "Analytics.MV_X", schema: "analytics", name: "mv_x"},
		{in: ` analytics . mv_x `, schema: "analytics", name: "mv_x"},
		{in: `"Sales"."MV X"`, schema: "Sales", name: "MV X"},
		{in: `"sales.eu"."a.b"`, schema: "sales.eu", name: "a.b"},
		{in: `s."say ""hi"""`, schema: "s", name: `say "hi"`},
		{in: `S$1._x9$`, schema: "s$1", name: "_x9$"},
		{in: "Ünï.Cödé", schema: "Ünï", name: "cödé"}, // PostgreSQL folds ASCII only
		{in: "mv_x", err: "no schema"},
		{in: "a.b.c", err: "too many parts"},
		{in: "a.", err: "empty part"},
		{in: ".b", err: "empty part"},
		{in: "", err: "empty part"},
		{in: `a.""`, err: "empty quoted identifier"},
		{in: `a."b`, err: "unterminated quoted identifier"},
		{in: "a.mv-x", err: `"mv-x" must be double-quoted`},
		{in: "a.1x", err: `"1x" must be double-quoted`},
		{in: `a."b"c`, err: `unexpected "c"`},
		{in: "a b.c", err: `unexpected "b"`},
	}
	for _, tt := range tests {
		schema, name, err := ParseQualifiedName(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: got %q %q %v, want error %q", tt.in, schema, name, err, tt.err)
			}
			continue
		}
		if err != nil || schema != tt.schema || name != tt.name {
			t.Errorf("%q: got %q %q %v, want %q %q", tt.in, schema, name, err, tt.schema, tt.name)
		}
	}
}

// A table name written out reads back as itself, quoted only where needed.
func TestTableName_String(t *testing.T) {
	for want, name := range map[string]TableName{
		"public.mv_refresh_log": {Schema: "public", Name: "mv_refresh_log"},
		`ops."Refresh Log"`:     {Schema: "ops", Name: "Refresh Log"},
		`"a.b"."say ""hi"""`:    {Schema: "a.b", Name: `say "hi"`},
		`"1st".log$`:            {Schema: "1st", Name: "log$"},
	} {
		if got := name.String(); got != want {
			t.Errorf("%#v writes %s, want %s", name, got, want)
		}
		schema, table, err := ParseTableName(name.String())
		if err != nil || (TableName{Schema: schema, Name: table}) != name {
			t.Errorf("%s reads back as %q.%q (%v), want %#v", want, schema, table, err, name)
		}
	}
}

func TestParseTableName(t *testing.T) {
	for in, want := range map[string][2]string{
		"mv_refresh_log":        {"public", "mv_refresh_log"},
		"Ops.Log":               {"ops", "log"},
		`"Ops"."refresh log"`:   {"Ops", "refresh log"},
		"public.mv_refresh_log": {"public", "mv_refresh_log"},
	} {
		s, n, err := ParseTableName(in)
		if err != nil || s != want[0] || n != want[1] {
			t.Errorf("%q: got %q %q %v", in, s, n, err)
		}
	}
	if _, _, err := ParseTableName("a.b.c"); err == nil {
		t.Error("a.b.c: want error")
	}
}

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"postgres://user:secret@db:5432/app":              "postgres://user:xxxxx@db:5432/app",
		"postgresql://user@db/app":                        "postgresql://user@db/app",
		"postgres://user:@db/app":                         "postgres://user:@db/app",
		"postgres://db/app":                               "postgres://db/app",
		"postgres://u:s@cr/t@db/app":                      "postgres://u:xxxxx@db/app",
		"postgres://u:p@ss@db/app?sslmode=disable":        "postgres://u:xxxxx@db/app?sslmode=disable",
		"postgres://u:p?ss@db/app":                        "postgres://u:xxxxx@db/app",
		"postgres://db/app?user=u&password=secret&x=1":    "postgres://db/app?user=u&password=xxxxx&x=1",
		"postgres://db/app?sslpassword=secret":            "postgres://db/app?sslpassword=xxxxx",
		"host=db user=u password=secret dbname=app":       "host=db user=u password=xxxxx dbname=app",
		"host=db password = 'se cr\\'et' dbname=app":      "host=db password = xxxxx dbname=app",
		"password='unterminated secret":                   "password=xxxxx",
		"host=db PASSWORD=secret sslpassword=other":       "host=db PASSWORD=xxxxx sslpassword=xxxxx",
		"host=db user=password_owner dbname=passwords_db": "host=db user=password_owner dbname=passwords_db",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestViewSettings(t *testing.T) {
	cfg := Default()
	cfg.Views = map[string]View{
		"Analytics.MV_Revenue":    {Debounce: ptr(5 * time.Second), Concurrently: ConcurrentlyAlways},
		`"Sales"."MV X"`:          {MaxWait: ptr(time.Minute), Enabled: ptr(false)},
		`"a.b"."say ""hi"" now"`:  {MinInterval: ptr(time.Hour)},
		"analytics.mv_defaults":   {},
		"not a valid key at all.": {Debounce: ptr(time.Hour)},
	}
	global := ViewSettings{Debounce: 2 * time.Second, MaxWait: 30 * time.Second, Concurrently: ConcurrentlyAuto, Enabled: true}
	tests := []struct {
		name string
		want ViewSettings
	}{
		{"analytics.mv_revenue", ViewSettings{Debounce: 5 * time.Second, MaxWait: 30 * time.Second, Concurrently: ConcurrentlyAlways, Enabled: true}},
		{"ANALYTICS.MV_REVENUE", ViewSettings{Debounce: 5 * time.Second, MaxWait: 30 * time.Second, Concurrently: ConcurrentlyAlways, Enabled: true}},
		{`"analytics"."mv_revenue"`, ViewSettings{Debounce: 5 * time.Second, MaxWait: 30 * time.Second, Concurrently: ConcurrentlyAlways, Enabled: true}},
		{`"Analytics"."MV_Revenue"`, global}, // quoted: case kept, so another view
		{`"Sales"."MV X"`, ViewSettings{Debounce: 2 * time.Second, MaxWait: time.Minute, Concurrently: ConcurrentlyAuto}},
		{`sales."MV X"`, global}, // unquoted sales is folded: not "Sales"
		{`"Sales"."mv x"`, global},
		{`"a.b"."say ""hi"" now"`, ViewSettings{Debounce: 2 * time.Second, MaxWait: 30 * time.Second, MinInterval: time.Hour, Concurrently: ConcurrentlyAuto, Enabled: true}},
		{"analytics.mv_defaults", global},
		{"analytics.unknown", global},
		{"not a valid key at all.", global},
		{"", global},
	}
	for _, tt := range tests {
		if got := cfg.ViewSettings(tt.name); got != tt.want {
			t.Errorf("ViewSettings(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestLoad_ViewOverridesFromFile(t *testing.T) {
	path := writeFile(t, `database_url: x=y
debounce: 1s
views:
  Analytics.MV_X:
    debounce: 3s
    concurrently: never
  '"Sales EU"."Daily.Totals"':
    enabled: false
    max_wait: 0s
`)
	cfg, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ViewSettings("analytics.mv_x"); got.Debounce != 3*time.Second || got.Concurrently != ConcurrentlyNever || !got.Enabled {
		t.Errorf("analytics.mv_x: %+v", got)
	}
	if got := cfg.ViewSettings(`"Sales EU"."Daily.Totals"`); got.Enabled || got.MaxWait != 0 || got.Debounce != time.Second {
		t.Errorf("sales: %+v", got)
	}
}
