//go:build unix

package warren

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter writes to a socket without ever blocking: it writes what the
// kernel takes now and leaves the rest to the writer goroutine, which may
// wait. Only plain TCP and Unix sockets have one. Not TLS or in-memory
// pipes, and not a type that wraps a socket: its Write may do more than
// write (count, throttle, inject faults), and writing around it would skip
// that.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // w.write, bound once so a write does not allocate
	p   []byte
	n   int
	err error
}

func newRawWriter(nc net.Conn) *rawWriter {
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
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w
}

func (w *rawWriter) write(fd uintptr) bool {
	n, err := syscall.Write(int(fd), w.p)
	if n < 0 {
		n = 0
	}
	w.n, w.err = n, err
	return true // never wait for the socket to become writable
}

// tryWrite writes a prefix of p, possibly empty, without blocking. A
// socket whose buffer is full is not an error. The caller must be the
// only one writing to the socket.
func (w *rawWriter) tryWrite(p []byte) (int, error) {
	w.p = p
	err := w.rc.Write(w.fn)
	w.p = nil
	if err != nil {
		return 0, err
	}
	if errors.Is(w.err, syscall.EAGAIN) || errors.Is(w.err, syscall.EINTR) {
		return w.n, nil
	}
	return w.n, w.err
}
