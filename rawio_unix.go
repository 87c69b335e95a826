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
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawConn{rc: rc}
	w.wfn, w.rfn = w.write, w.read
	return w
}

func (w *rawConn) write(fd uintptr) bool {
	n, err := sysWrite(fd, w.wp)
	w.wn, w.werr = max(n, 0), err
	return true // never wait for the socket to become writable
}

// tryWrite writes a prefix of p, possibly empty, without blocking. A
// socket whose buffer is full is not an error. The caller must be the
// only one writing to the socket.
func (w *rawConn) tryWrite(p []byte) (int, error) {
	w.wp = p
	err := w.rc.Write(w.wfn)
	w.wp = nil
	if err != nil {
		return 0, err
	}
	if errors.Is(w.werr, syscall.EAGAIN) || errors.Is(w.werr, syscall.EINTR) {
		return w.wn, nil
	}
	return w.wn, w.werr
}

func (w *rawConn) read(fd uintptr) bool {
	for {
		n, err := sysRead(fd, w.rp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // nothing yet: the poller waits, then calls again
		case err != nil:
			w.rn, w.rerr = 0, err
		case n == 0:
			w.rn, w.rerr = 0, io.EOF
		default:
			w.rn, w.rerr = n, nil
		}
		return true
	}
}

// Read reads into p like the socket's own Read. Only the reader goroutine
// calls it.
func (w *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.rp = p
	err := w.rc.Read(w.rfn)
	w.rp = nil
	if err != nil {
		return 0, err
	}
	return w.rn, w.rerr
}
