package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/internal/wait"
)

func TestRun_BadConfigurationIsAClearError(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"run", "--slot", "Bad-Slot", "--database-url", "postgres://app:s3cret@db/app", "--workers", "0"}, &stderr, &stderr)
	if err == nil {
		t.Fatal("run accepted an invalid slot name and worker count")
	}
	msg := err.Error() + stderr.String()
	for _, want := range []string{"slot", "workers"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not name %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("error shows the password: %s", msg)
	}
}

// TestMain_StopsGracefullyOnSignal runs the real binary: SIGHUP does not
// stop it (it logs that there is no reload), SIGTERM and SIGINT stop it with
// exit status 0.
func TestMain_StopsGracefullyOnSignal(t *testing.T) {
	cluster, _ := startCluster(t, "")
	bin := binary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			addr := freeAddr(t)
			cmd := exec.Command(bin, "run", "--listen", addr)
			cmd.Env = append(os.Environ(), "MVREFRESHER_DATABASE_URL="+cluster.URL("postgres"), "MVREFRESHER_LOG_FORMAT=json")
			var logs syncBuffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			waitReady(t, "http://"+addr+"/readyz", exited, &logs)
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the SIGHUP to be logged", func() bool {
				return strings.Contains(logs.String(), "configuration reload is not supported")
			})
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{"mvrefresher_replication_connected 1", "mvrefresher_standby 0", "go_goroutines", "process_cpu_seconds_total"} {
				if !strings.Contains(string(body), want) {
					t.Errorf("/metrics over HTTP lacks %q", want)
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("after %s: %v\n%s", sig, err, logs.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("still running 30s after %s\n%s", sig, logs.String())
			}
			if !strings.Contains(logs.String(), `"msg":"stopped"`) {
				t.Errorf("no graceful stop in the log:\n%s", logs.String())
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitReady polls url until it answers 200, failing if the process exits.
func waitReady(t *testing.T, url string, exited <-chan error, logs fmt.Stringer) {
	t.Helper()
	err := wait.Until(url+" to answer 200", 30*time.Second, func() (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("exited before ready: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
}

// TestDemo runs the demo with --keep: every view is refreshed at start, a
// burst refreshes the views, the view over a view follows its base; once
// the traffic stops the demo keeps running, and the command lines it
// printed find it; Ctrl-C stops it with exit 0, leaving nothing running.
func TestDemo(t *testing.T) {
	needsPostgreSQL(t)
	var stdout syncBuffer
	var stderr bytes.Buffer
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	demoErr := make(chan error, 1)
	go func() {
		demoErr <- run(ctx, []string{"demo", "--duration", "12s", "--keep", "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	// While it runs, its address serves the views' freshness.
	addr := regexp.MustCompile(`serving (http://127\.0\.0\.1:\d+)/metrics`)
	var views []map[string]any
	err := wait.Until("the demo's /views to list its six views", 30*time.Second, func() (bool, error) {
		m := addr.FindStringSubmatch(stdout.String())
		if m == nil {
			return false, nil
		}
		code, err := getJSON(m[1]+"/views", &views)
		return err == nil && code == http.StatusOK && len(views) == 6, nil
	})
	if err != nil {
		t.Errorf("%v (last answer %v)\n%s", err, views, stdout.String())
	}
	err = wait.Until("the traffic to stop", 60*time.Second, func() (bool, error) {
		return strings.Contains(stdout.String(), "-- traffic stopped; PostgreSQL, NATS and the daemon keep running"), nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	exploreDemo(t, stdout.String())
	waitUntil(t, "the demo to print the refresh asked for", func() bool {
		return strings.Contains(stdout.String(), "analytics.mv_revenue_summary        manual")
	})
	interrupt()
	if err := <-demoErr; err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"analytics.mv_conversion_funnels     startup",
		"analytics.mv_retention_cohorts      startup",
		"analytics.mv_revenue_summary        startup",
		"analytics.mv_experiment_results     startup",
		"analytics.mv_revenue_monthly        startup",
		"analytics.mv_daily_activity         startup",
		"analytics.mv_revenue_summary        change",
		"analytics.mv_revenue_monthly        cascade",
		"--keep: the traffic stops after 12s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The view maintained incrementally says how each maintenance went.
	if !regexp.MustCompile(`analytics\.mv_daily_activity +change .* written +incremental, 1 group, `).MatchString(out) {
		t.Errorf("demo output lacks an incremental maintenance of analytics.mv_daily_activity recomputing one group:\n%s", out)
	}
	if strings.Contains(out, " failed ") || stderr.Len() > 0 {
		t.Errorf("demo reported problems:\n%s\n%s", out, stderr.String())
	}
	// Slot health is shown as such, never as an empty refresh line.
	if !strings.Contains(out, "-- slot mvrefresher_demo: confirmed") || strings.Contains(out, "00:00:00.000") {
		t.Errorf("demo output lacks the slot's health, or shows it as a refresh:\n%s", out)
	}
}

// exploreDemo runs the command lines the demo printed against it.
func exploreDemo(t *testing.T, out string) {
	t.Helper()
	command := func(name string) []string {
		t.Helper()
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, "  mvrefresher "+name+" "); ok {
				return append([]string{name}, shellFields(t, rest)...)
			}
		}
		t.Fatalf("the demo prints no %s command:\n%s", name, out)
		return nil
	}
	mvrefresher := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}

	status := command("status")
	if out, err := mvrefresher(status...); err != nil || !strings.Contains(out, "slot mvrefresher_demo: active") ||
		!regexp.MustCompile(`analytics\.mv_revenue_monthly +ok`).MatchString(out) {
		t.Errorf("the demo's status command: %v\n%s", err, out)
	}
	if out, err := mvrefresher(append(status, "--slot", "nosuch")...); err != nil ||
		!strings.Contains(out, "slot nosuch: does not exist in this database, which has: mvrefresher_demo") {
		t.Errorf("status for a slot that does not exist: %v\n%s", err, out)
	}
	if out, err := mvrefresher(command("explain")...); err != nil || !strings.Contains(out, "refreshes 6 view(s) in 2 wave(s)") ||
		!strings.Contains(out, "debounce 1s, max_wait 5s") {
		t.Errorf("the demo's explain command: %v\n%s", err, out)
	}
	if out, err := mvrefresher(command("graph")...); err != nil || !strings.Contains(out, "mv_revenue_monthly") {
		t.Errorf("the demo's graph command: %v\n%s", err, out)
	}
	// The traffic has just stopped: its last changes may still wait out
	// their debounce, and verify rightly finds those views behind.
	var verified string
	if err := wait.Until("the demo's verify command to find every view equal to its definition", 30*time.Second, func() (bool, error) {
		out, err := mvrefresher(command("verify")...)
		verified = out
		return err == nil, nil
	}); err != nil {
		t.Errorf("%v\n%s", err, verified)
	}

	// watch sees the refresh the refresh command asks for.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watchOut, watchErr syncBuffer
	watched := make(chan error, 1)
	go func() { watched <- run(watchCtx, command("watch"), &watchOut, &watchErr) }()
	waitUntil(t, "watch to subscribe", func() bool { return strings.Contains(watchErr.String(), "watching") })
	if out, err := mvrefresher(command("refresh")...); err != nil || !strings.Contains(out, "analytics.mv_revenue_summary is refreshed") {
		t.Errorf("the demo's refresh command: %v\n%s", err, out)
	}
	waitUntil(t, "watch to show the manual refresh", func() bool {
		return regexp.MustCompile(`analytics\.mv_revenue_summary +manual`).MatchString(watchOut.String())
	})
	stopWatch()
	if err := <-watched; err != nil {
		t.Errorf("the demo's watch command: %v\n%s", err, watchErr.String())
	}
	if out, err := mvrefresher(command("wait")...); err != nil || !strings.Contains(out, "fresh through") {
		t.Errorf("the demo's wait command: %v\n%s", err, out)
	}
}

// shellFields splits a command line the demo printed as a POSIX shell
// would: words separated by spaces, single quotes kept together.
func shellFields(t *testing.T, line string) []string {
	t.Helper()
	var fields []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				fields = append(fields, word.String())
				word.Reset()
			}
			inWord = false
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		fields = append(fields, word.String())
	}
	return fields
}
