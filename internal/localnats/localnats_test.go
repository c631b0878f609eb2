package localnats

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestPubSub(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()

	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect %s: %v", s.URL(), err)
	}
	defer nc.Close()

	sub, err := nc.SubscribeSync("mvr.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("mvr.test", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("got %q, want hello", msg.Data)
	}

	// JetStream must be usable, since the daemon publishes through it.
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"js.>"}}); err != nil {
		t.Fatalf("add stream: %v", err)
	}
	if _, err := js.Publish("js.x", []byte("x")); err != nil {
		t.Fatalf("js publish: %v", err)
	}

	nc.Close()
	s.Shutdown()
	if _, err := os.Stat(s.storeDir); !os.IsNotExist(err) {
		t.Fatalf("store dir %s still exists (err=%v)", s.storeDir, err)
	}
	s.Shutdown() // second call must be harmless
}
