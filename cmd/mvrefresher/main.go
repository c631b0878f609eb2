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

	"github.com/mvrefresher/mvrefresher/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var quiet exitError
		if !errors.As(err, &quiet) {
			fmt.Fprintln(os.Stderr, "mvrefresher:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries an exit code for results that are not failures of the
// program itself (check finding errors), or that were reported already (2:
// misuse, with the usage).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage asked for is printed
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitError{2}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runDaemon(ctx, rest, stdout, stderr)
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
		if err := newCommandFlags("version", stdout, stderr).parse(rest); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "mvrefresher", buildinfo.Read())
		return nil
	case "-version", "--version":
		fmt.Fprintln(stdout, "mvrefresher", buildinfo.Read())
		return nil
	case "-h", "-help", "--help", "help":
		if len(rest) > 0 && cmd == "help" { // help COMMAND
			return dispatch(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage())
		return nil
	}
	fmt.Fprintf(stderr, "mvrefresher: unknown command %q\n\n%s", cmd, usage())
	return exitError{2}
}
