package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestRelease_BinaryAsInTheImage builds with the release flags (static,
// trimmed, version stamped, as the Makefile and the Dockerfile do) and runs
// the binary as a non-root user configured by the environment alone.
func TestRelease_BinaryAsInTheImage(t *testing.T) {
	needsPostgreSQL(t)
	// Not t.TempDir: its parent is private to root, and the binary runs as
	// nobody.
	dir, err := os.MkdirTemp("", "mvr-release-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mvrefresher")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/mvrefresher/mvrefresher/internal/buildinfo.version=v9.8.7", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("release build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !regexp.MustCompile(`^mvrefresher v9\.8\.7 \(commit \S+, go1\.\d+\S*\)\n$`).Match(out) {
		t.Fatalf("version: %q, %v; want the stamped version, the commit and the Go version", out, err)
	}

	cluster, _ := startCluster(t, "")
	addr := freeAddr(t)
	cmd := exec.Command(bin) // the image's CMD: run
	cmd.Args = []string{bin, "run"}
	cmd.Dir = dir
	cmd.Env = []string{"DATABASE_URL=" + cluster.URL("postgres"), "MVREFRESHER_LISTEN=" + addr, "MVREFRESHER_LOG_FORMAT=json"}
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("running as root, and no nobody user to drop to: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitReady(t, "http://"+addr+"/readyz", exited, &logs)
	if out, err := exec.Command(bin, "health", "--url", "http://"+addr+"/healthz").CombinedOutput(); err != nil {
		t.Errorf("health: %v\n%s", err, out)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running after SIGTERM\n%s", logs.String())
	}
	if out, err := exec.Command(bin, "health", "--url", "http://"+addr+"/healthz").CombinedOutput(); err == nil {
		t.Errorf("health answered ok with nothing running: %s", out)
	}
}
