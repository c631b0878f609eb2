// Command mvrefresher keeps PostgreSQL materialized views fresh by reacting
// to logical replication. See the README for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var quiet exitError
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &quiet) {
			fmt.Fprintln(os.Stderr, "mvrefresher:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries an exit code for results that are not failures of the
// program itself (check finding errors).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `Usage: mvrefresher <command> [flags]

Commands:
  run       the daemon: refresh materialized views when their sources change
  check     lint the managed views (non-deterministic columns, missing unique index, ...); exit 1 on errors
  status    the views, their sources and last refresh, and the replication slot (--json)
  explain   dry run: which views a change to a table (or a view's refresh) refreshes, in which order (--json)
  graph     the dependency graph of the managed views (--format dot, mermaid or json)
  verify    compare materialized views with their definitions, read-only (--json); exit 1 on a difference
  watch     print refresh events as they arrive (--json, --view, --schema)
  refresh   ask the running daemon for a refresh of views (--wait: exit when done, 1 on timeout)
  wait      wait until a view includes every commit up to a WAL position (--view, --lsn, --timeout); exit 1 on timeout
  teardown  drop the slot and publication (not the log table or the views); --force if a daemon still runs
  demo      everything local: a throwaway PostgreSQL and NATS, the seed's views, synthetic traffic
  health    ask a running daemon's /healthz (for container health checks)
  version   print the version

Run 'mvrefresher <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runDaemon(ctx, rest, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "explain":
		return runExplain(ctx, rest, stdout, stderr)
	case "graph":
		return runGraph(ctx, rest, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, stdout, stderr)
	case "watch":
		return runWatch(ctx, rest, stdout, stderr)
	case "teardown":
		return runTeardown(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "health":
		return runHealth(ctx, rest, stdout, stderr)
	case "refresh":
		return runRefresh(ctx, rest, stdout, stderr)
	case "wait":
		return runWait(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "mvrefresher", version())
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
