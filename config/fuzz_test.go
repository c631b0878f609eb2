package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

// FuzzParseQualifiedName: any text is a name or an error, never a panic,
// and a parsed name quoted again parses to itself (views' names come from
// the config and can contain anything).
func FuzzParseQualifiedName(f *testing.F) {
	for _, seed := range []string{`analytics.mv_x`, `app."Mixed Case ""quoted"" view"`, `"a.b".c`, `A.B`, `a`, `.`, `"`, `a."`, `a.b.c`, ` a . b `, `"é"."ü"`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		schema, name, err := ParseQualifiedName(s)
		if err != nil {
			return
		}
		again, againName, err := ParseQualifiedName(pgx.Identifier{schema, name}.Sanitize())
		if err != nil || again != schema || againName != name {
			t.Fatalf("%q parsed to %q.%q, whose quoted form parses to %q.%q (%v)", s, schema, name, again, againName, err)
		}
	})
}

// FuzzConfigFile: any file is a configuration or an error naming what is
// wrong, never a panic.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"database_url: postgres://db/app\ndebounce: 2s\n",
		"nats:\n  url: nats://x\n  jetstream: true\nviews:\n  analytics.mv_x:\n    debounce: 5s\n    concurrently: always\n",
		"views:\n  \"a.b\":\n    enabled: false\n",
		"workers: [1, 2]\n", "debounce: -1s\n", "a: &x 1\nb: *x\n", "- 1\n- 2\n", "nats: 3\n", "views: {x: {debounce: }}\n", "", "{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "mvrefresher.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Load(path, nil, nil)
	})
}
