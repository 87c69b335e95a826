//go:build unix

package warren

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// rawConn reads and writes a socket through its file descriptor, with the
// runtime's poller doing the waiting:
//
//   - tryWrite writes what the kernel takes now and never waits; the
//     writer goroutine, which may wait, writes the rest;
//   - Read is net.Conn's Read (waits for input, honours read deadlines,
//     reports io.EOF) with a cheaper system call (see sysRead).
//
// Only plain TCP and Unix sockets have one. Not TLS or in-memory pipes,
// and not a type that wraps a socket: its Read and Write may do more than
// read and write (count, throttle, inject faults), and going around them
// would skip that.
type rawConn struct {
	rc syscall.RawConn

	wfn  func(fd uintptr) bool // rawConn.write, bound once so a write does not allocate
	wp   []byte
	wn   int
	werr error

	rfn  func(fd uintptr) bool // rawConn.read, likewise
	rp   []byte
	rn   int
	rerr error
}

func newRawConn(nc net.Conn) *rawConn {
	var sc syscall.Conn
	switch t := nc.(type) {
	case *net.TCPConn:
		sc = t
	case *net.UnixConn:
		sc = t
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &rawConn{rc: rc}
	c.wfn, c.rfn = c.write, c.read
	return c
}

func (c *rawConn) write(fd uintptr) bool {
	n, err := sysWrite(fd, c.wp)
	c.wn, c.werr = max(n, 0), err
	return true // never wait for the socket to become writable
}

// tryWrite writes a prefix of p, possibly empty, without blocking. A
// socket whose buffer is full is not an error. The caller must be the
// only one writing to the socket.
func (c *rawConn) tryWrite(p []byte) (int, error) {
	c.wp = p
	err := c.rc.Write(c.wfn)
	c.wp = nil
	if err != nil {
		return 0, err
	}
	if errors.Is(c.werr, syscall.EAGAIN) || errors.Is(c.werr, syscall.EINTR) {
		return c.wn, nil
	}
	return c.wn, c.werr
}

func (c *rawConn) read(fd uintptr) bool {
	for {
		n, err := sysRead(fd, c.rp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // nothing yet: the poller waits, then calls again
		case err != nil:
			c.rn, c.rerr = 0, err
		case n == 0:
			c.rn, c.rerr = 0, io.EOF
		default:
			c.rn, c.rerr = n, nil
		}
		return true
	}
}

// Read reads into p like the socket's own Read. Only the reader goroutine
// calls it.
func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rp = p
	err := c.rc.Read(c.rfn)
	c.rp = nil
	if err != nil {
		return 0, err
	}
	return c.rn, c.rerr
}
