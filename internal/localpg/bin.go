package localpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BinDirEnv names the environment variable that chooses the server
// binaries (a directory with initdb, pg_ctl and postgres), e.g. to run the
// tests on another major version.
const BinDirEnv = "MVREFRESHER_TEST_PG_BIN"

// findBinDir returns the directory holding initdb, pg_ctl and postgres:
// BinDirEnv's, or initdb's on PATH, or the newest /usr/lib/postgresql/*/bin.
// pg_ctl execs the postgres next to itself, so all three must come from the
// same real directory, hence symlinks on PATH are resolved.
func findBinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if !hasServerBins(dir) {
			return "", fmt.Errorf("localpg: %s=%s has no initdb, pg_ctl and postgres", BinDirEnv, dir)
		}
		return filepath.Abs(dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil && hasServerBins(filepath.Dir(resolved)) {
			return filepath.Dir(resolved), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return slices.Compare(versionOf(b), versionOf(a)) })
	for _, d := range dirs {
		if hasServerBins(d) {
			return d, nil
		}
	}
	return "", errors.New("localpg: no PostgreSQL server binaries found: looked for initdb " +
		"(with pg_ctl and postgres next to it) on PATH and in /usr/lib/postgresql/*/bin; " +
		"install them with `apt-get install postgresql`")
}

func hasServerBins(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// versionOf turns /usr/lib/postgresql/9.6/bin into [9 6].
func versionOf(binDir string) []int {
	var v []int
	for _, part := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			n = -1 // unparsable directories sort last
		}
		v = append(v, n)
	}
	return v
}

// serverUser returns the credential to run initdb and pg_ctl with: initdb and
// postgres refuse to run as root, so as root we switch to the postgres user.
// nil means run as ourselves.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("localpg: running as root, and PostgreSQL refuses to run as root, "+
			"but there is no \"postgres\" OS user to run it as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("localpg: parse ids of user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// run executes a PostgreSQL tool as the server user and returns its output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	// cmd.Dir and HOME point at our temp dir so that, as the postgres user,
	// nothing tries to read the caller's (root's) cwd or home.
	cmd.Dir = c.root
	cmd.Env = append(cleanEnv(), "HOME="+c.root)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl -l redirects the server's output, but if a postmaster ever kept
	// our pipe open, do not hang waiting for it.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// cleanEnv drops PG* variables (PGDATA, PGPORT, ...) that would silently
// redirect the tools to another cluster.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// chown hands a path we created to the server user.
func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// killServer SIGKILLs the postmaster and its process group (pg_ctl makes the
// postmaster a session leader, so the group holds all backends), then waits
// for the postmaster to disappear.
func killServer(pid int) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !exited(pid, 10*time.Second) {
		return fmt.Errorf("postmaster pid %d still alive after SIGKILL", pid)
	}
	return nil
}

// exited waits up to timeout for pid to exit.
func exited(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// alive reports whether pid runs; a zombie waiting for init to reap it
// counts as dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// Format: "pid (comm) S ..."; comm may contain spaces and parens.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
