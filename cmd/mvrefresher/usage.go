package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commandDoc is what the usage says of a command.
type commandDoc struct {
	name    string
	args    string // what follows the flags on its usage line
	summary string
}

// commands are listed in this order by `mvrefresher -h`.
var commands = []commandDoc{
	{"run", "", "the daemon: refresh materialized views when their sources change"},
	{"check", "", "lint the managed views (non-deterministic columns, missing unique index, ...); exit 1 on errors"},
	{"status", "", "the views, their sources and last refresh, and the replication slot (--json)"},
	{"explain", "SCHEMA.TABLE_OR_VIEW", "dry run: which views a change to a table (or a view's refresh) refreshes, in which order (--json)"},
	{"graph", "", "the dependency graph of the managed views (--format dot, mermaid or json)"},
	{"verify", "[SCHEMA.VIEW ...]", "compare materialized views (and incrementally maintained tables) with their definitions, read-only (--json); every managed view without names; exit 1 on a difference"},
	{"watch", "", "print refresh events as they arrive (--json, --view, --schema)"},
	{"refresh", "SCHEMA.VIEW ...", "ask the running daemon for a refresh of views (--wait: exit when done, 1 on timeout)"},
	{"wait", "", "wait until a view includes every commit up to a WAL position (--view, --lsn, --timeout); exit 1 on timeout"},
	{"teardown", "", "drop the slot and publication (not the log table or the views); --force if a daemon still runs"},
	{"demo", "", "everything local: a throwaway PostgreSQL and NATS, the seed's views, synthetic traffic"},
	{"health", "", "ask a running daemon's /healthz (for container health checks)"},
	{"version", "", "print the version, the commit and the Go version it was built with"},
}

// The configuration keys each command reads, bound as its flags (run binds
// every key); the configuration file and the environment set them all.
var (
	checkKeys    = []string{"database_url", "replication_url", "slot", "publication", "schemas", "refresh_log_table", "max_staleness", "min_interval", "refresh_every"}
	statusKeys   = []string{"database_url", "replication_url", "slot", "schemas", "refresh_log_table", "max_staleness"}
	explainKeys  = []string{"database_url", "schemas", "refresh_log_table", "debounce", "max_wait", "min_interval", "max_staleness"}
	graphKeys    = []string{"database_url", "schemas", "refresh_log_table"}
	verifyKeys   = []string{"database_url", "schemas", "refresh_log_table", "lock_timeout"}
	teardownKeys = []string{"database_url", "replication_url", "slot", "publication", "refresh_log_table"}
	waitKeys     = []string{"database_url", "listen"}
	refreshKeys  = []string{"database_url", "listen"}
	watchKeys    = []string{"nats.url", "nats.subject_prefix", "nats.stream"}
)

func usage() string {
	var b strings.Builder
	b.WriteString("Usage: mvrefresher <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s  %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'mvrefresher <command> -h' for a command's flags, 'mvrefresher --version' for the version.\n")
	return b.String()
}

// commandFlags are a command's flags and its usage. -h and --help print the
// usage on stdout and make parse return flag.ErrHelp, which run turns into
// success; misuse (an unknown flag, a bad value, a missing or stray
// argument) prints the usage on stderr and exits 2.
type commandFlags struct {
	*flag.FlagSet
	doc            commandDoc
	stdout, stderr io.Writer
}

func newCommandFlags(name string, stdout, stderr io.Writer) *commandFlags {
	doc := commandDoc{name: name}
	for _, c := range commands {
		if c.name == name {
			doc = c
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr) // the flag package's own messages: misuse
	fs.Usage = func() {} // parse prints the usage, where it belongs
	return &commandFlags{FlagSet: fs, doc: doc, stdout: stdout, stderr: stderr}
}

func (c *commandFlags) printUsage(w io.Writer) {
	line := "Usage: mvrefresher " + c.doc.name
	hasFlags := false
	c.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		line += " [flags]"
	}
	if c.doc.args != "" {
		line += " " + c.doc.args
	}
	fmt.Fprintf(w, "%s\n\n%s.\n", line, strings.ToUpper(c.doc.summary[:1])+c.doc.summary[1:])
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		c.SetOutput(w)
		c.PrintDefaults()
		c.SetOutput(c.stderr)
	}
}

// parse parses args, which may hold no argument but flags.
func (c *commandFlags) parse(args []string) error {
	if err := c.parseFlags(args); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return c.misuse(fmt.Errorf("unexpected argument %q", c.Arg(0)))
	}
	return nil
}

// parseNames parses args, where flags may also follow the names, and
// returns the names.
func (c *commandFlags) parseNames(args []string) ([]string, error) {
	if err := c.parseFlags(args); err != nil {
		return nil, err
	}
	var names []string
	for c.NArg() > 0 {
		names = append(names, c.Arg(0))
		if err := c.parseFlags(c.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (c *commandFlags) parseFlags(args []string) error {
	err := c.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.printUsage(c.stdout)
		return err
	case err != nil:
		// The flag package has said what is wrong.
		c.printUsage(c.stderr)
		return exitError{2}
	}
	return nil
}

// misuse reports a wrong use of the command with its usage: exit status 2.
func (c *commandFlags) misuse(err error) error {
	fmt.Fprintf(c.stderr, "mvrefresher %s: %v\n", c.doc.name, err)
	c.printUsage(c.stderr)
	return exitError{2}
}
