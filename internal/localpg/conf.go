package localpg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// confFile is included from postgresql.conf; it is rewritten whole when a
// start attempt has to move to another port.
const confFile = "mvrefresher.conf"

// managed settings may not be overridden: URL, Port and the socket dir
// depend on them.
var managed = map[string]bool{"port": true, "listen_addresses": true, "unix_socket_directories": true}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

func (c *Cluster) defaultSettings() [][2]string {
	return [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(c.port)},
		{"unix_socket_directories", c.root},
		{"wal_level", "logical"},
		{"max_replication_slots", "32"},
		{"max_wal_senders", "32"},
		{"max_connections", "200"},
		// Durability is worthless for a throwaway cluster; speed is not.
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"shared_buffers", "128MB"},
		{"log_min_messages", "warning"},
		{"log_statement", "none"},
		{"logging_collector", "off"},
	}
}

// writeConf writes confFile for the current port: defaults first, then the
// caller's settings, so the caller wins (last line wins in postgresql.conf).
func (c *Cluster) writeConf() error {
	var b strings.Builder
	b.WriteString("# written by mvrefresher internal/localpg\n")
	for _, kv := range c.defaultSettings() {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], quoteConf(kv[1]))
	}
	names := make([]string, 0, len(c.settings))
	for name := range c.settings {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !settingName.MatchString(name) {
			return fmt.Errorf("invalid setting name %q", name)
		}
		if managed[strings.ToLower(name)] {
			return fmt.Errorf("setting %q is managed by localpg (URL and Port depend on it)", name)
		}
		fmt.Fprintf(&b, "%s = %s\n", name, quoteConf(c.settings[name]))
	}
	path := filepath.Join(c.dataDir, confFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return c.chown(path)
}

// includeConf makes postgresql.conf read confFile; a plain include (not
// include_if_exists) so a missing file fails loudly.
func (c *Cluster) includeConf() error {
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\ninclude = '%s'\n", confFile)
	return errors.Join(err, f.Close())
}

// quoteConf quotes any value as a postgresql.conf string, which every
// setting type accepts.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// freePort asks the kernel for an unused port. Someone may grab it before
// postgres binds it; Start retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) logSize() int64 {
	fi, err := os.Stat(c.logFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the server log written after offset (one start attempt).
func (c *Cluster) logSince(offset int64) string {
	f, err := os.Open(c.logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func portTaken(log string) bool {
	return strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "could not create any TCP/IP sockets")
}
