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
		buf = s.pool.getRead()
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
// not allocate.
//
// Frames larger than a pooled buffer (a body frame near the default
// frame_max of 128 KiB) complete in a buffer the core grows, so the input
// side keeps one more: the largest such buffer the core gave back (up to
// maxKeptRead), which the next reads take first. A stream of large frames
// is then read without allocating; the driver drops the buffer when the
// connection goes quiet (dropRead).
type bufPool struct {
	p sync.Pool

	mu  sync.Mutex
	big []byte // an input buffer larger than poolBufSize, or nil
}

// poolBufSize is the size of a pooled buffer: one socket read.
const poolBufSize = 64 << 10

// maxKeptRead bounds the input buffer the pool keeps beyond poolBufSize.
const maxKeptRead = 4 << 20

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

// getRead returns a buffer to read input into: the kept large one if
// there is one, else a pooled one.
func (p *bufPool) getRead() []byte {
	p.mu.Lock()
	b := p.big
	p.big = nil
	p.mu.Unlock()
	if b != nil {
		return b[:cap(b)]
	}
	return p.get()
}

// putRead gives back an input buffer: a pooled size goes to the pool, a
// larger one (up to maxKeptRead) is kept for the next read if it is the
// largest seen; b must not be used afterwards.
func (p *bufPool) putRead(b []byte) {
	if cap(b) <= poolBufSize || cap(b) > maxKeptRead {
		p.put(b)
		return
	}
	p.mu.Lock()
	if cap(b) > cap(p.big) {
		p.big = b[:0]
	}
	p.mu.Unlock()
}

// dropRead forgets the kept large input buffer (a quiet connection).
func (p *bufPool) dropRead() {
	p.mu.Lock()
	p.big = nil
	p.mu.Unlock()
}
