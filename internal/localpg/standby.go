package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
)

// StartStandby starts a physical standby of c on a free port: a base backup
// (pg_backup_start and pg_backup_stop around a copy of the data directory)
// that streams from c through a physical replication slot called name,
// created here. opts.Settings apply on top of c's settings, e.g.
// {"hot_standby_feedback": "on"}. Stop the standby before c.
func (c *Cluster) StartStandby(ctx context.Context, name string, opts Options) (*Cluster, error) {
	settings := map[string]string{}
	for k, v := range c.settings {
		settings[k] = v
	}
	// dbname: the slot sync worker (PostgreSQL 17) connects to a database.
	settings["primary_conninfo"] = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=%s", c.port, name)
	settings["primary_slot_name"] = name
	settings["hot_standby"] = "on"
	for k, v := range opts.Settings {
		settings[k] = v
	}
	s := &Cluster{binDir: c.binDir, cred: c.cred, settings: settings, log: opts.Logger}
	if s.log == nil {
		s.log = c.log
	}
	var err error
	if s.root, err = os.MkdirTemp("", "mvr-pg-"); err != nil {
		return nil, fmt.Errorf("localpg: create temp dir: %w", err)
	}
	s.dataDir = filepath.Join(s.root, "data")
	s.logFile = filepath.Join(s.dataDir, "postgres.log")
	if err := c.baseBackup(ctx, name, s.dataDir); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("standby %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "standby.signal"), nil, 0o600); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("standby %s: %w", name, err)
	}
	if err := s.chownTree(s.root); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("standby %s: chown to postgres: %w", name, err)
	}
	s.log.Info("localpg: start standby", "name", name, "primary_port", c.port)
	if err := s.launch(ctx); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("standby %s: %w", name, err)
	}
	return s, nil
}

// baseBackup creates the physical slot and copies the data directory into
// dst between pg_backup_start and pg_backup_stop, on one connection (a
// backup belongs to its session), then writes the backup label.
func (c *Cluster) baseBackup(ctx context.Context, slot, dst string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("base backup: connect to the primary: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot); err != nil {
		return fmt.Errorf("base backup: create physical slot %s: %w", slot, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_backup_start($1, true)", "localpg standby "+slot); err != nil {
		return fmt.Errorf("base backup: pg_backup_start: %w", err)
	}
	copyErr := copyDataDir(c.dataDir, dst)
	var label string
	if err := conn.QueryRow(ctx, "SELECT labelfile FROM pg_backup_stop(false)").Scan(&label); err != nil {
		return errors.Join(copyErr, fmt.Errorf("base backup: pg_backup_stop: %w", err))
	}
	if copyErr != nil {
		return fmt.Errorf("base backup: copy %s: %w", c.dataDir, copyErr)
	}
	return os.WriteFile(filepath.Join(dst, "backup_label"), []byte(label), 0o600)
}

// skipInBackup are what a base backup leaves out (as pg_basebackup does):
// the running server's own files, the WAL (the standby streams it) and
// replication slots (a standby has its own).
var skipInBackup = map[string]bool{
	"postmaster.pid": true, "postmaster.opts": true, "postgres.log": true,
	"pg_wal": true, "pg_replslot": true, "pg_stat_tmp": true, "standby.signal": true,
}

// copyDataDir copies a running server's data directory; files that vanish
// or shrink meanwhile are fine, WAL replay mends them.
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if skipInBackup[rel] {
			if !d.IsDir() {
				return nil
			}
			// Kept, empty: the server expects them.
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if rel == "pg_wal" {
				if err := os.Mkdir(filepath.Join(target, "archive_status"), 0o700); err != nil {
					return err
				}
			}
			return fs.SkipDir
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		return copyFile(path, target, info.Mode().Perm())
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// chownTree gives the server's user everything under dir.
func (c *Cluster) chownTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return c.chown(path)
	})
}

// Promote makes a standby a primary and waits until it is one.
func (c *Cluster) Promote(ctx context.Context) error {
	if out, err := c.run(ctx, "pg_ctl", "promote", "-D", c.dataDir, "-w", "-t", "60"); err != nil {
		return fmt.Errorf("promote postgres on port %d: %w\n%s", c.port, err, out)
	}
	return nil
}

// Halt stops the server (mode "fast" or "immediate", the latter a crash)
// and leaves it stopped, with its data; Stop removes it.
func (c *Cluster) Halt(ctx context.Context, mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("halt postgres: unknown mode %q (want fast or immediate)", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shutdown(ctx, mode)
}

// Resume starts a halted server again on its port.
func (c *Cluster) Resume(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pgCtlStart(ctx); err != nil {
		return err
	}
	return c.waitReady(ctx)
}
