package main

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

func runCapture(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestRun_CommandHelp: -h and --help print what the command does, its
// arguments and its own flags, on stdout, and succeed.
func TestRun_CommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, help := range []string{"-h", "--help"} {
			out, errOut, err := runCapture(c.name, help)
			if err != nil || errOut != "" {
				t.Errorf("%s %s: err %v, stderr %q", c.name, help, err, errOut)
			}
			if !strings.HasPrefix(out, "Usage: mvrefresher "+c.name) || !strings.Contains(out, c.summary[1:]) {
				t.Errorf("%s %s: not its usage:\n%s", c.name, help, out)
			}
		}
	}
	if out, _, _ := runCapture("help", "explain"); !strings.HasPrefix(out, "Usage: mvrefresher explain [flags] SCHEMA.TABLE_OR_VIEW\n") {
		t.Errorf("help explain:\n%s", out)
	}
	// Each command lists the flags it reads, and no other.
	flags := func(command string) string {
		out, _, _ := runCapture(command, "-h")
		return out
	}
	for _, c := range []struct {
		command       string
		want, notWant []string
	}{
		{"run", []string{"-workers", "-nats-url", "-database-url", "-config"}, nil},
		{"status", []string{"-database-url", "-slot", "-json", "-config"}, []string{"-workers", "-nats-url", "-listen", "-debounce"}},
		{"graph", []string{"-database-url", "-format"}, []string{"-slot", "-workers"}},
		{"watch", []string{"-nats-url", "-nats-subject-prefix", "-nats-stream", "-config"}, []string{"-database-url", "-workers"}},
		{"wait", []string{"-database-url", "-listen", "-view"}, []string{"-slot", "-nats-url"}},
		{"health", []string{"-url"}, []string{"-config", "-database-url"}},
	} {
		out := flags(c.command)
		for _, w := range c.want {
			if !strings.Contains(out, "  "+w+" ") && !strings.Contains(out, "  "+w+"\n") {
				t.Errorf("%s -h does not list %s:\n%s", c.command, w, out)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(out, "  "+w+" ") || strings.Contains(out, "  "+w+"\n") {
				t.Errorf("%s -h lists %s, which it does not read:\n%s", c.command, w, out)
			}
		}
	}
}

// TestRun_Misuse: an unknown flag, a bad value, a missing or stray argument
// exit 2 with the usage on stderr, before anything is connected to.
func TestRun_Misuse(t *testing.T) {
	for _, args := range [][]string{
		{"status", "--workers", "2"},
		{"status", "--bogus"},
		{"check", "stray"},
		{"run", "stray"},
		{"graph", "--format", "png"},
		{"watch", "extra"},
		{"health", "extra"},
		{"version", "extra"},
		{"explain"},
		{"explain", "a.b", "c.d"},
		{"wait", "--lsn", "0/0"},
		{"teardown", "--debounce", "soon"},
	} {
		out, errOut, err := runCapture(args...)
		if exitCode(err) != 2 || out != "" || !strings.Contains(errOut, "Usage: mvrefresher "+args[0]) {
			t.Errorf("%v: exit %d (%v), stdout %q, want 2 and the usage on stderr:\n%s", args, exitCode(err), err, out, errOut)
		}
	}
	_, errOut, err := runCapture("frobnicate")
	if exitCode(err) != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) || !strings.Contains(errOut, "Commands:") {
		t.Errorf("unknown command: exit %d (%v):\n%s", exitCode(err), err, errOut)
	}
	if _, errOut, err := runCapture(); exitCode(err) != 2 || !strings.Contains(errOut, "Commands:") {
		t.Errorf("no command: exit %d (%v):\n%s", exitCode(err), err, errOut)
	}
	if out, _, err := runCapture("--help"); err != nil || !strings.Contains(out, "Commands:") {
		t.Errorf("--help: %v:\n%s", err, out)
	}
}

func TestRun_Version(t *testing.T) {
	want := regexp.MustCompile(`^mvrefresher \S+ \(commit \S+, go1\.\d+\S*\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, _, err := runCapture(args...)
		if err != nil || !want.MatchString(out) {
			t.Errorf("%v: %q, %v; want the version, the commit and the Go version", args, out, err)
		}
	}
}

func TestNewLogger_DurationsAsText(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		logger, err := newLogger(&buf, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("waited", "wait", 30*time.Second, slog.Group("retry", "after", 1500*time.Millisecond))
		want := map[string][]string{
			"json": {`"wait":"30s"`, `"after":"1.5s"`},
			"text": {"wait=30s", "retry.after=1.5s"},
		}[format]
		for _, w := range want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%s log lacks %s: %s", format, w, buf.String())
			}
		}
	}
}
