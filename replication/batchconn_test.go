package replication

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// batchPair returns a batching client connection and the server's end.
func batchPair(t *testing.T) (*batchConn, net.Conn) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("batching needs Linux's SO_RCVLOWAT")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	bc, ok := newBatchConn(c).(*batchConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	t.Cleanup(func() { bc.Close(); server.Close() })
	return bc, server
}

// Many small writes, as the walsender makes them, arrive intact and in
// order, and a small final write is not held back by the batching.
func TestBatchConn_DeliversEverything(t *testing.T) {
	bc, server := batchPair(t)
	bc.setBatching(true, MinBatchDelay)
	var msgs [][]byte
	var want []byte
	for i := range 20000 { // 1 to 300 bytes each
		msg := bytes.Repeat([]byte{byte(i)}, 1+i%300)
		msgs = append(msgs, msg)
		want = append(want, msg...)
	}
	go func() {
		for _, msg := range msgs {
			if _, err := server.Write(msg); err != nil {
				return
			}
		}
	}()
	total := len(want)
	if err := bc.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, total)
	// Reads of odd sizes, like pgproto3's chunk reader makes.
	for off := 0; off < total; {
		end := min(off+5000, total)
		n, err := bc.Read(got[off:end])
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", off, total, err)
		}
		off += n
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes read differ from the bytes written")
	}
	// The stream is idle now; a lone small message still arrives, long
	// before the read deadline.
	go server.Write([]byte("x"))
	buf := make([]byte, 10)
	n, err := bc.Read(buf)
	if err != nil || string(buf[:n]) != "x" {
		t.Fatalf("lone message: read %q, %v", buf[:n], err)
	}
}

// The caller's read deadline holds while batching: a read with nothing to
// read ends with a timeout at the deadline, and the connection still works.
func TestBatchConn_Deadline(t *testing.T) {
	bc, server := batchPair(t)
	bc.setBatching(true, MinBatchDelay)
	deadline := time.Now().Add(50 * time.Millisecond)
	if err := bc.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	_, err := bc.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read with nothing to read: %v, want a timeout", err)
	}
	if time.Now().Before(deadline) {
		t.Fatal("the read timed out before the deadline")
	}
	if err := bc.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	go server.Write([]byte("after"))
	buf := make([]byte, 10)
	n, err := bc.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("after a timeout: read %q, %v", buf[:n], err)
	}
}

// A past deadline set from another goroutine interrupts a blocked read: the
// stream's shutdown relies on that.
func TestBatchConn_Interrupt(t *testing.T) {
	bc, _ := batchPair(t)
	bc.setBatching(true, MinBatchDelay)
	if err := bc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := bc.Read(make([]byte, 10))
		done <- err
	}()
	// Wherever the read is (not started, waiting for a batch, or idle), a
	// past deadline ends it.
	if err := bc.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("interrupted read: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a past deadline did not interrupt the read")
	}
}

// The peer closing the connection ends the stream with io.EOF.
func TestBatchConn_EOF(t *testing.T) {
	bc, server := batchPair(t)
	bc.setBatching(true, MinBatchDelay)
	if _, err := server.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(bc)
	if err != nil || string(got) != "last" {
		t.Fatalf("read %q, %v; want \"last\" and EOF", got, err)
	}
}
