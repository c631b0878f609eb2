// Package natstest runs NATS servers for tests that stop and restart one
// on the same port and store (an outage), which localnats's servers (a
// random port, a store of their own) cannot.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// FreePort returns a local TCP port nothing listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// StartOn starts a NATS server with JetStream stored in store on port,
// stopped when the test ends; auth, if not nil, admits its clients.
func StartOn(t testing.TB, port int, store string, auth server.Authentication) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store, NoSigs: true, CustomClientAuthentication: auth})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	return ns
}
