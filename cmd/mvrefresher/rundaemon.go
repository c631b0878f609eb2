package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/daemon"
)

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("run", stdout, stderr)
	flags := config.BindFlags(fs.FlagSet)
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := flags.Load()
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	stopHangups := ignoreHangups(logger)
	defer stopHangups()
	return serve(ctx, cfg, logger)
}

// ignoreHangups keeps SIGHUP, whose default action ends the process, from
// stopping the daemon: a reload is what an operator sending it expects, and
// the log says there is none. The returned function stops it.
func ignoreHangups(logger *slog.Logger) (stop func()) {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-hangups:
				logger.Warn("SIGHUP received: configuration reload is not supported; restart the daemon to apply a new configuration")
			}
		}
	}()
	return func() {
		signal.Stop(hangups)
		close(done)
		<-stopped
	}
}

// serve runs the daemon and its HTTP endpoints until ctx ends.
func serve(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	d := daemon.New(cfg, logger)
	if cfg.Listen == "" {
		return d.Run(ctx)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return serveOn(ctx, d, ln, logger)
}

// serveOn runs d and its HTTP endpoints on ln until ctx ends.
func serveOn(ctx context.Context, d *daemon.Daemon, ln net.Listener, logger *slog.Logger) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("serving HTTP: /metrics, /healthz, /readyz, /views", "listen", ln.Addr().String())

	runErr := d.Run(ctx)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		shutdownErr = errors.Join(shutdownErr, err)
	}
	if runErr != nil {
		return runErr
	}
	if shutdownErr != nil {
		return fmt.Errorf("stop HTTP server: %w", shutdownErr)
	}
	return nil
}

// newLogger builds the daemon's logger. Durations are written as 30s, as
// in the configuration, rather than the JSON handler's integer nanoseconds.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log_level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: formatDuration}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func formatDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
