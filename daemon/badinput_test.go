package daemon_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
	"github.com/mvrefresher/mvrefresher/internal/localpg"
	"github.com/mvrefresher/mvrefresher/internal/localpg/pgtest"
)

func TestDaemon_UnknownViewInConfigIsAnError(t *testing.T) {
	e := newEnv(t, schemaSQL)
	cfg := e.cfg
	cfg.Views = map[string]config.View{"app.mv_totls": {}, "app.v_big": {}}
	err := daemon.New(cfg, slog.New(slog.DiscardHandler)).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"app.mv_totls": no such materialized view`) || !strings.Contains(err.Error(), `"app.v_big" is not a materialized view`) {
		t.Fatalf("Run with misnamed views: %v", err)
	}
}

func TestDaemon_WALLevelNotLogicalIsAnError(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t, localpg.Options{Settings: map[string]string{"wal_level": "replica"}})
	cfg := config.Default()
	cfg.DatabaseURL = c.URL("postgres")
	err := daemon.New(cfg, slog.New(slog.DiscardHandler)).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `wal_level is "replica"`) || !strings.Contains(err.Error(), "wal_level = logical") {
		t.Fatalf("Run on wal_level=replica: %v", err)
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDaemon_PasswordsNeverLogged(t *testing.T) {
	var logs lockedBuffer
	cfg := config.Default()
	cfg.DatabaseURL = "postgres://app:supersecret@127.0.0.1:1/app?connect_timeout=1"
	cfg.NATS.URL = "nats://user:natssecret@127.0.0.1:1"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// Unreachable: it keeps retrying, logging each attempt, until ctx ends.
	if err := daemon.New(cfg, slog.New(slog.NewTextHandler(&logs, nil))).Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "reconnecting") {
		t.Fatalf("no reconnect attempt logged:\n%s", out)
	}
	if strings.Contains(out, "supersecret") || strings.Contains(out, "natssecret") {
		t.Fatalf("a password reached the log:\n%s", out)
	}
}
