package driver

import (
	"net"
	"sync"
	"time"

	"github.com/warren-amqp/warren/transport/netpipe"
)

// socket is the byte stream as the driver uses it. Every transport is
// one of three kinds (newSocket picks):
//
//   - rawSocket: the standard library's TCP and Unix sockets, read and
//     written through the file descriptor (socket_unix.go);
//   - pipeSocket: netpipe's in-memory pipes;
//   - plainSocket: anything else (TLS, a proxy's stream, a type wrapping
//     a socket), used only through net.Conn's Read and Write.
//
// The first two are fast: they write without blocking (tryWrite), so a
// goroutine about to wait can write its own request, and the driver lends
// their read side to waiting goroutines (lend.go). A plain socket is
// written only by the writer goroutine and read only by the reader
// goroutine. A type that wraps a socket is plain even when it exposes the
// socket's methods: its Read and Write may do more than move bytes
// (count, throttle, inject faults), and going around them would skip that.
type socket interface {
	// read reads into buf, or, when buf is nil, into a buffer from the
	// pool taken once data may be there (a raw socket does not hold one
	// while it waits). It returns the buffer used (nil if it took none),
	// the count and the error, like net.Conn's Read: it waits for input,
	// honours the read deadline and reports io.EOF. Only the socket's
	// current reader calls it.
	read(buf []byte) ([]byte, int, error)
	// tryWrite writes a prefix of p, possibly empty, without blocking; a
	// full socket buffer is not an error. Only fast sockets have it, and
	// only the holder of the write side calls it.
	tryWrite(p []byte) (int, error)
	// write writes all of p, blocking while the peer does not read (the
	// writer goroutine only).
	write(p []byte) (int, error)
	// setReadDeadline interrupts a blocked read once t has passed.
	setReadDeadline(t time.Time) error
	close() error
	// fast reports whether tryWrite works and the read side may be lent.
	fast() bool
}

// newSocket wraps nc for the driver, taking read buffers from pool.
func newSocket(nc net.Conn, pool *bufPool) socket {
	if s := newRawSocket(nc, pool); s != nil {
		return s
	}
	if p, ok := nc.(*netpipe.Conn); ok {
		return &pipeSocket{plainSocket{nc: p, pool: pool}, p}
	}
	return &plainSocket{nc: nc, pool: pool}
}

// plainSocket uses only net.Conn's methods. A read waits with its buffer
// taken: net.Conn offers no way to wait for input without one.
type plainSocket struct {
	nc   net.Conn
	pool *bufPool
}

func (s *plainSocket) read(buf []byte) ([]byte, int, error) {
	if buf == nil {
		buf = s.pool.get()
	}
	n, err := s.nc.Read(buf)
	return buf, n, err
}

func (s *plainSocket) tryWrite([]byte) (int, error)      { return 0, nil }
func (s *plainSocket) write(p []byte) (int, error)       { return s.nc.Write(p) }
func (s *plainSocket) setReadDeadline(t time.Time) error { return s.nc.SetReadDeadline(t) }
func (s *plainSocket) close() error                      { return s.nc.Close() }
func (s *plainSocket) fast() bool                        { return false }

// pipeSocket is a netpipe.Conn, which writes without blocking in memory.
type pipeSocket struct {
	plainSocket
	p *netpipe.Conn
}

func (s *pipeSocket) tryWrite(p []byte) (int, error) { return s.p.TryWrite(p) }
func (s *pipeSocket) fast() bool                     { return true }

// bufPool holds the driver's read and write buffers while nobody uses
// them, so that a quiet connection holds none: the garbage collector
// empties a sync.Pool. Each driver has its own. Only buffers of exactly
// poolBufSize bytes are pooled, as array pointers, so that get and put do
// not allocate; a larger buffer (a frame or a burst bigger than that) is
// left to the garbage collector.
type bufPool struct{ p sync.Pool }

// poolBufSize is the size of a pooled buffer: one socket read.
const poolBufSize = 64 << 10

// get returns a buffer of poolBufSize bytes.
func (p *bufPool) get() []byte {
	if a, ok := p.p.Get().(*[poolBufSize]byte); ok {
		return a[:]
	}
	return make([]byte, poolBufSize)
}

// put gives b back (if it is a pooled size); b must not be used
// afterwards.
func (p *bufPool) put(b []byte) {
	if cap(b) != poolBufSize {
		return
	}
	p.p.Put((*[poolBufSize]byte)(b[:poolBufSize]))
}
