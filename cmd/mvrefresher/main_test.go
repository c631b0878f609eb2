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

// TestDemo runs the demo for a few seconds: every view is refreshed at start,
// a burst refreshes the views, the view over a view follows its base, and it
// exits 0 leaving nothing running.
func TestDemo(t *testing.T) {
	needsPostgreSQL(t)
	var stdout syncBuffer
	var stderr bytes.Buffer
	demoErr := make(chan error, 1)
	go func() {
		demoErr <- run(context.Background(), []string{"demo", "--duration", "12s", "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	// While it runs, its address serves the views' freshness.
	addr := regexp.MustCompile(`serving (http://127\.0\.0\.1:\d+)/metrics`)
	var views []map[string]any
	err := wait.Until("the demo's /views to list its five views", 30*time.Second, func() (bool, error) {
		m := addr.FindStringSubmatch(stdout.String())
		if m == nil {
			return false, nil
		}
		code, err := getJSON(m[1]+"/views", &views)
		return err == nil && code == http.StatusOK && len(views) == 5, nil
	})
	if err != nil {
		t.Errorf("%v (last answer %v)\n%s", err, views, stdout.String())
	}
	if err := <-demoErr; err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "mvrefresher wait --url http://127.0.0.1:") {
		t.Errorf("demo output does not show how to wait for a view:\n%s", out)
	}
	for _, want := range []string{
		"analytics.mv_conversion_funnels     startup",
		"analytics.mv_retention_cohorts      startup",
		"analytics.mv_revenue_summary        startup",
		"analytics.mv_experiment_results     startup",
		"analytics.mv_revenue_monthly        startup",
		"analytics.mv_revenue_summary        change",
		"analytics.mv_revenue_monthly        cascade",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " failed ") || stderr.Len() > 0 {
		t.Errorf("demo reported problems:\n%s\n%s", out, stderr.String())
	}
	// Slot health is shown as such, never as an empty refresh line.
	if !strings.Contains(out, "-- slot mvrefresher_demo: confirmed") || strings.Contains(out, "00:00:00.000") {
		t.Errorf("demo output lacks the slot's health, or shows it as a refresh:\n%s", out)
	}
}
