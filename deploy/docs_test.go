package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// markdownLink is an inline Markdown link; its target has no spaces.
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocs_LinksResolve checks that every relative link of README.md and
// docs/*.md names an existing file and, with a #fragment into a Markdown
// file, one of its headings; and that the README links to every file of
// docs/, so that each is reachable from it.
func TestDocs_LinksResolve(t *testing.T) {
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no ../docs/*.md")
	}
	linkedFromReadme := map[string]bool{}
	for _, file := range append([]string{"../README.md"}, docs...) {
		for _, target := range markdownLinks(t, file) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, fragment, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), path)
				if _, err := os.Stat(resolved); err != nil {
					t.Errorf("%s: link %q: no file %s", file, target, resolved)
					continue
				}
			}
			if file == "../README.md" {
				linkedFromReadme[resolved] = true
			}
			if fragment != "" && strings.HasSuffix(resolved, ".md") && !headingAnchors(t, resolved)[fragment] {
				t.Errorf("%s: link %q: no heading #%s in %s", file, target, fragment, resolved)
			}
		}
	}
	for _, doc := range docs {
		if !linkedFromReadme[doc] {
			t.Errorf("README.md does not link to %s", doc)
		}
	}
}

// markdownLinks are the targets of the inline links of a Markdown file,
// outside fenced code blocks.
func markdownLinks(t *testing.T, file string) []string {
	t.Helper()
	var targets []string
	inCode := false
	for _, line := range strings.Split(string(readFile(t, file)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
		}
		if inCode {
			continue
		}
		for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
			targets = append(targets, m[1])
		}
	}
	return targets
}

// headingAnchors are the anchors GitHub gives a Markdown file's headings:
// lower case, spaces turned into hyphens, punctuation but hyphens and
// underscores dropped, and -1, -2... added to repeats.
func headingAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	seen := map[string]int{}
	inCode := false
	for _, line := range strings.Split(string(readFile(t, file)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
		}
		heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inCode || !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		anchor := b.String()
		if n := seen[anchor]; n > 0 {
			anchors[anchor+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[anchor] = true
		}
		seen[anchor]++
	}
	return anchors
}
