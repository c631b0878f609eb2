package config

import (
	"os"
	"strings"
	"testing"
)

// TestKeys_Documented keeps the configuration reference (docs/configuration.md)
// in step with the keys the code accepts.
func TestKeys_Documented(t *testing.T) {
	reference, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		def := k.Default
		if def == "" {
			def = `""`
		}
		row := "| `" + k.Name + "` | "
		i := strings.Index(string(reference), row)
		if i < 0 {
			t.Errorf("docs/configuration.md: the table has no row for %s", k.Name)
			continue
		}
		line := string(reference)[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if k.Name != "database_url" && k.Name != "schemas" && !strings.Contains(line, "`"+def+"`") && !strings.Contains(line, def) {
			t.Errorf("docs/configuration.md: the row for %s does not show the default %q: %s", k.Name, def, line)
		}
	}
}
