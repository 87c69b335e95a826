//go:build unix

package driver

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// rawSocket reads and writes a TCP or Unix socket through its file
// descriptor, with the runtime's poller doing the waiting:
//
//   - read is net.Conn's Read (waits for input, honours the read
//     deadline, reports io.EOF) with a cheaper system call (sysRead), and
//     takes its buffer from the pool only when data may be there: a
//     connection waiting for input holds no buffer;
//   - tryWrite writes what the kernel takes now and never waits; the
//     writer goroutine, which may wait, writes the rest with net.Conn's
//     Write.
//
// Any goroutine may call read or tryWrite, one at a time per side: the
// driver passes each side between goroutines under its lock (lend.go,
// write.go).
type rawSocket struct {
	nc   net.Conn
	rc   syscall.RawConn
	pool *bufPool

	wfn  func(fd uintptr) bool // rawSocket.writeFD, bound once so that a write does not allocate
	wp   []byte
	wn   int
	werr error

	rfn    func(fd uintptr) bool // rawSocket.readFD, likewise
	rp     []byte
	pooled bool // rp came from the pool
	rn     int
	rerr   error
}

// newRawSocket returns a rawSocket for the standard library's TCP and Unix
// sockets, nil for anything else.
func newRawSocket(nc net.Conn, pool *bufPool) *rawSocket {
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
	s := &rawSocket{nc: nc, rc: rc, pool: pool}
	s.wfn, s.rfn = s.writeFD, s.readFD
	return s
}

func (s *rawSocket) fast() bool                        { return true }
func (s *rawSocket) write(p []byte) (int, error)       { return s.nc.Write(p) }
func (s *rawSocket) setReadDeadline(t time.Time) error { return s.nc.SetReadDeadline(t) }
func (s *rawSocket) close() error                      { return s.nc.Close() }

func (s *rawSocket) writeFD(fd uintptr) bool {
	n, err := sysWrite(fd, s.wp)
	s.wn, s.werr = max(n, 0), err
	return true // never wait for the socket to become writable
}

func (s *rawSocket) tryWrite(p []byte) (int, error) {
	s.wp = p
	err := s.rc.Write(s.wfn)
	s.wp = nil
	if err != nil {
		return 0, err
	}
	if errors.Is(s.werr, syscall.EAGAIN) || errors.Is(s.werr, syscall.EINTR) {
		return s.wn, nil
	}
	return s.wn, s.werr
}

func (s *rawSocket) readFD(fd uintptr) bool {
	if s.rp == nil {
		s.rp, s.pooled = s.pool.getRead(), true
	}
	for {
		n, err := sysRead(fd, s.rp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if s.pooled { // wait without holding a buffer
				s.pool.putRead(s.rp)
				s.rp, s.pooled = nil, false
			}
			return false // nothing yet: the poller waits, then calls again
		case err != nil:
			s.rn, s.rerr = 0, err
		case n == 0:
			s.rn, s.rerr = 0, io.EOF
		default:
			s.rn, s.rerr = n, nil
		}
		return true
	}
}

func (s *rawSocket) read(buf []byte) ([]byte, int, error) {
	if buf != nil && len(buf) == 0 {
		return buf, 0, nil
	}
	s.rp = buf
	err := s.rc.Read(s.rfn)
	buf, s.rp, s.pooled = s.rp, nil, false
	if err != nil {
		return buf, 0, err
	}
	return buf, s.rn, s.rerr
}
