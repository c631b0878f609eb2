// Package localnats runs an embedded NATS server with JetStream for the demo
// and tests.
package localnats

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DebugEnv, when set to a non-empty value, turns on the server's debug
// logging (to stderr); otherwise the server is silent so it does not drown
// test output.
const DebugEnv = "MVR_NATS_DEBUG"

// readyTimeout bounds the wait for the listener; JetStream start-up is the
// slow part and takes well under a second on a healthy machine.
const readyTimeout = 10 * time.Second

// Server is an embedded nats-server listening on 127.0.0.1.
type Server struct {
	ns       *server.Server
	storeDir string
}

// Start runs an embedded nats-server on 127.0.0.1 with a random port and
// JetStream enabled (stored in a fresh temp dir), and waits until it accepts
// connections.
func Start() (*Server, error) {
	dir, err := os.MkdirTemp("", "mvr-nats-")
	if err != nil {
		return nil, fmt.Errorf("nats: create store dir: %w", err)
	}
	debug := os.Getenv(DebugEnv) != ""
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     !debug,
		Debug:     debug,
		// The host process owns signal handling (the demo exits on SIGINT
		// itself and shuts us down).
		NoSigs: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("nats: new server: %w", err)
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("nats: server not ready for connections after " + readyTimeout.String())
	}
	return &Server{ns: ns, storeDir: dir}, nil
}

// URL returns the client URL, nats://127.0.0.1:PORT.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Shutdown stops the server, waits for it to finish and removes the store
// dir. Safe to call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	_ = os.RemoveAll(s.storeDir)
}
