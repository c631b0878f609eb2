package config

import (
	"os"
	"strings"
	"testing"
)

// TestKeys_DocumentedInREADME keeps the README's configuration reference in
// step with the keys the code accepts.
func TestKeys_DocumentedInREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		def := k.Default
		if def == "" {
			def = `""`
		}
		row := "| `" + k.Name + "` | "
		i := strings.Index(string(readme), row)
		if i < 0 {
			t.Errorf("README configuration table has no row for %s", k.Name)
			continue
		}
		line := string(readme)[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if k.Name != "database_url" && k.Name != "schemas" && !strings.Contains(line, "`"+def+"`") && !strings.Contains(line, def) {
			t.Errorf("README row for %s does not show the default %q: %s", k.Name, def, line)
		}
	}
}
