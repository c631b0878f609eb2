package replication

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The walsender sends every change as its own small write, so a client that
// reads as soon as anything arrives wakes up, and makes a system call, for
// nearly every change: that cost several times the CPU of the stream itself.
// While the stream runs, batchConn instead asks the kernel (SO_RCVLOWAT) not
// to report the socket readable before batchBytes are waiting, waits at most
// the batch delay for that, and then reads everything there is in one call. The
// walsender is the bottleneck of a backlog, so waiting costs no throughput,
// and it even gets cheaper: its writes no longer wake anybody up.
const (
	// batchBytes: wake up as soon as this much is waiting. Small enough that
	// the kernel keeps its receive window (it clamps the window when this
	// asks for a larger buffer), large enough that the delay usually ends
	// the wait first.
	batchBytes = 32 << 10
	// batchBufSize is the most one read takes.
	batchBufSize = 256 << 10
)

// batchConn wraps the replication connection's TCP connection. Until
// setBatching(true) it reads like the connection it wraps, so that queries
// on the connection get their answers without delay.
//
// Reads come from one goroutine at a time (pgconn's); SetReadDeadline and
// the other methods may be called from any goroutine.
type batchConn struct {
	net.Conn
	raw syscall.RawConn

	// Owned by the reading goroutine.
	buf  []byte
	r, w int
	full bool // the last read filled buf: more may be waiting

	mu       sync.Mutex
	deadline time.Time // the caller's read deadline
	short    time.Time // while waiting for a batch: when to stop waiting
	delay    time.Duration
	batching bool
	lowat    bool // SO_RCVLOWAT is batchBytes, not 1
	broken   bool // SO_RCVLOWAT cannot be set: read as soon as anything arrives
}

// newBatchConn wraps a TCP connection on Linux (where SO_RCVLOWAT also holds
// back poll's wake-ups); anything else is returned as it is.
func newBatchConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || runtime.GOOS != "linux" {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &batchConn{Conn: c, raw: raw}
}

// findBatchConn finds the batchConn under c (pgconn's TLS wraps it).
func findBatchConn(c net.Conn) *batchConn {
	for c != nil {
		if bc, ok := c.(*batchConn); ok {
			return bc
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// setBatching turns batching on (the stream started), waiting up to delay
// for a batch, or off. Call it from the reading goroutine, between reads.
func (c *batchConn) setBatching(on bool, delay time.Duration) {
	c.mu.Lock()
	c.batching, c.delay = on, delay
	c.mu.Unlock()
	if !on {
		c.setLowat(false)
		c.arm(false)
	}
}

func (c *batchConn) Read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	c.mu.Lock()
	batching := c.batching && !c.broken
	c.mu.Unlock()
	if !batching {
		return c.Conn.Read(p)
	}
	if err := c.fill(); err != nil {
		return 0, err
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// fill reads into the empty buffer: a batch, or whatever arrived within
// the delay, or, once the stream is idle, the first bytes that arrive.
func (c *batchConn) fill() error {
	if c.buf == nil {
		c.buf = make([]byte, batchBufSize)
	}
	c.r, c.w = 0, 0
	for {
		if !c.lowat {
			c.arm(false)
			n, err := c.Conn.Read(c.buf)
			if n > 0 {
				c.got(n)
				// Data is flowing: batch the next read.
				c.setLowat(true)
				return nil
			}
			return err
		}
		c.arm(true)
		var n int
		var err error
		if c.full {
			// Nothing new may arrive to report the socket readable.
			n, err = c.readRaw(false)
			if n == 0 && err == nil {
				n, err = c.readRaw(true)
			}
		} else {
			n, err = c.readRaw(true)
		}
		if n > 0 {
			c.got(n)
			return nil
		}
		if !isTimeout(err) || c.expired() {
			return err
		}
		// Less than batchBytes arrived within the delay: take what did.
		c.arm(false)
		n, err = c.readRaw(false)
		if n > 0 {
			c.got(n)
			return nil
		}
		if err != nil {
			return err
		}
		// Nothing did: the stream is idle. Wake up on its first byte.
		c.setLowat(false)
	}
}

func (c *batchConn) got(n int) {
	c.w = n
	c.full = n == len(c.buf)
}

// readRaw reads into buf with one system call. With wait it first waits
// until the socket is readable (with SO_RCVLOWAT: holds batchBytes) or the
// read deadline passes; without, it returns 0 and no error when nothing is
// there.
func (c *batchConn) readRaw(wait bool) (int, error) {
	var (
		n       int
		err     error
		waiting = wait
	)
	rerr := c.raw.Read(func(fd uintptr) bool {
		if waiting {
			waiting = false
			return false
		}
		for {
			n, err = readNonblocking(fd, c.buf)
			if err != syscall.EINTR {
				break
			}
		}
		switch {
		case err == syscall.EAGAIN:
			n, err = 0, nil
			return !wait
		case err != nil:
			n, err = 0, os.NewSyscallError("read", err)
		case n == 0:
			err = io.EOF
		}
		return true
	})
	if rerr != nil { // a deadline, or the connection was closed
		return 0, rerr
	}
	if err != nil && err != io.EOF {
		err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, err
}

// readNonblocking is read(2) on the non-blocking socket, without the Go
// scheduler's bookkeeping for a system call: the call never waits, and that
// bookkeeping (waking the runtime's monitor thread, which then polls, and
// handing the processor to another thread when the call takes a while, as
// copying a batch out of a busy socket does) took a measurable share of the
// stream's CPU (bench/README.md, drain).
func readNonblocking(fd uintptr, p []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// arm sets the connection's read deadline: the caller's, or, while waiting
// for a batch, at most the delay from now.
func (c *batchConn) arm(short bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if short {
		c.short = time.Now().Add(c.delay)
	} else {
		c.short = time.Time{}
	}
	_ = c.Conn.SetReadDeadline(c.effective())
}

func (c *batchConn) effective() time.Time {
	if c.short.IsZero() || (!c.deadline.IsZero() && c.deadline.Before(c.short)) {
		return c.deadline
	}
	return c.short
}

// expired reports whether the caller's read deadline has passed.
func (c *batchConn) expired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.deadline.IsZero() && !time.Now().Before(c.deadline)
}

func (c *batchConn) setLowat(on bool) {
	if c.lowat == on {
		return
	}
	v := 1
	if on {
		v = batchBytes
	}
	var serr error
	err := c.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v)
	})
	if err == nil {
		err = serr
	}
	if err != nil && on {
		c.mu.Lock()
		c.broken = true
		c.mu.Unlock()
		return
	}
	c.lowat = on && err == nil
}

func (c *batchConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(c.effective())
}

func (c *batchConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
