package netpipe

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultBufferSize is the per-direction buffer size used when
// [Options.BufferSize] is zero or negative.
const DefaultBufferSize = 64 << 10

// Network is the network name reported by [Addr.Network] and in errors.
const Network = "netpipe"

// Addr is the address of one end of a pipe. It implements [net.Addr].
type Addr string

// Network returns [Network].
func (a Addr) Network() string { return Network }

// String returns the address name.
func (a Addr) String() string { return string(a) }

// Options configures a pipe made by [PipeWith]. The zero value is ready to
// use and gives the defaults.
type Options struct {
	// BufferSize bounds the bytes queued in each direction: a Write blocks
	// once that many bytes wait to be read. Zero or negative means
	// [DefaultBufferSize].
	BufferSize int

	// ClientAddr names the client end: the client's LocalAddr and the
	// server's RemoteAddr. Empty means "client".
	ClientAddr string

	// ServerAddr names the server end: the server's LocalAddr and the
	// client's RemoteAddr. Empty means "server".
	ServerAddr string
}

// Pipe returns a connected pair with default [Options]: bytes written to
// client are read from server and the other way round.
func Pipe() (client, server *Conn) {
	return PipeWith(Options{})
}

// PipeWith returns a connected pair configured by o.
func PipeWith(o Options) (client, server *Conn) {
	size := o.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	ca, sa := Addr(o.ClientAddr), Addr(o.ServerAddr)
	if ca == "" {
		ca = "client"
	}
	if sa == "" {
		sa = "server"
	}
	p := &pipe{size: size}
	p.cond.L = &p.mu
	c2s, s2c := new(stream), new(stream)
	client = &Conn{p: p, rx: s2c, tx: c2s, local: ca, remote: sa}
	server = &Conn{p: p, rx: c2s, tx: s2c, local: sa, remote: ca}
	return client, server
}

// pipe is the state both ends share: one lock and one condition variable
// for both directions, so every waiter sees every change.
type pipe struct {
	mu   sync.Mutex
	cond sync.Cond // L is &mu; broadcast on every state change
	size int       // per-direction bound
}

// stream is one direction of a pipe. Guarded by pipe.mu.
type stream struct {
	data    []byte // queued bytes are data[off:]
	off     int
	wclosed bool // writer closed or half-closed: EOF after the queue drains
	rclosed bool // reader closed: writes fail, queued bytes were dropped
}

func (s *stream) buffered() int { return len(s.data) - s.off }

// put queues as much of b as fits under size and returns how much it took.
func (s *stream) put(b []byte, size int) int {
	n := min(size-s.buffered(), len(b))
	if n <= 0 {
		return 0
	}
	if s.off > 0 && cap(s.data)-len(s.data) < n {
		// Slide the queue to the front instead of growing past the bound.
		s.data = s.data[:copy(s.data, s.data[s.off:])]
		s.off = 0
	}
	s.data = append(s.data, b[:n]...)
	return n
}

// get moves queued bytes into b and returns how many.
func (s *stream) get(b []byte) int {
	n := copy(b, s.data[s.off:])
	s.off += n
	if s.off == len(s.data) {
		s.data, s.off = s.data[:0], 0
	}
	return n
}

// deadline is one of a Conn's two deadlines. Guarded by pipe.mu.
type deadline struct {
	timer   *time.Timer
	gen     uint64 // bumped on every set, so a stale timer callback is ignored
	expired bool
}

// Conn is one end of a pipe made by [Pipe] or [PipeWith]. It implements
// [net.Conn]; all methods are safe for concurrent use.
type Conn struct {
	p             *pipe
	rx, tx        *stream
	local, remote Addr

	// Guarded by p.mu.
	closed  bool
	writing bool // a Write is in progress; Writes are serialized
	rd, wd  deadline
}

var _ net.Conn = (*Conn)(nil)

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: Network, Source: c.local, Addr: c.remote, Err: err}
}

// Read reads queued bytes into b. It blocks until at least one byte is
// queued, the peer closes its writing side (then, once the queue is empty,
// it returns [io.EOF]), c is closed ([net.ErrClosed]) or the read deadline
// passes ([os.ErrDeadlineExceeded], a timeout). An expired deadline fails
// the call even when bytes are queued, as for a socket.
func (c *Conn) Read(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, c.opError("read", net.ErrClosed)
		case c.rd.expired:
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		case len(b) == 0:
			return 0, nil
		case c.rx.buffered() > 0:
			n := c.rx.get(b)
			p.cond.Broadcast() // room for a blocked writer
			return n, nil
		case c.rx.wclosed:
			return 0, io.EOF
		}
		p.cond.Wait()
	}
}

// writeErr reports why a Write cannot proceed, or nil. Called with p.mu held.
func (c *Conn) writeErr() error {
	switch {
	case c.closed:
		return c.opError("write", net.ErrClosed)
	case c.wd.expired:
		return c.opError("write", os.ErrDeadlineExceeded)
	case c.tx.wclosed, c.tx.rclosed:
		// Half-closed by CloseWrite, or the peer has closed.
		return c.opError("write", io.ErrClosedPipe)
	}
	return nil
}

// Write queues b for the peer. It returns once every byte is queued; while
// the buffer is full it blocks until the peer reads. If c is closed
// ([net.ErrClosed]), the write deadline passes ([os.ErrDeadlineExceeded], a
// timeout), or the peer closes or c was half-closed ([io.ErrClosedPipe]), it
// returns the count queued so far with the error. Writes are serialized: the
// bytes of concurrent Writes never interleave.
func (c *Conn) Write(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for c.writing {
		if err := c.writeErr(); err != nil {
			return 0, err
		}
		p.cond.Wait()
	}
	c.writing = true
	defer func() {
		c.writing = false
		p.cond.Broadcast() // the next Write's turn
	}()
	n := 0
	for {
		if err := c.writeErr(); err != nil {
			return n, err
		}
		if m := c.tx.put(b[n:], p.size); m > 0 {
			n += m
			p.cond.Broadcast() // bytes for a blocked reader
		}
		if n == len(b) {
			return n, nil
		}
		p.cond.Wait()
	}
}

// TryWrite queues as much of b as fits in the buffer now and returns how
// many bytes it took, without blocking: like a write to a non-blocking
// socket, a full buffer is not an error (n may be 0), and neither is
// another Write in progress (then n is 0, so bytes never interleave). It
// fails as Write does when c is closed, the write deadline has passed or
// the peer has closed.
func (c *Conn) TryWrite(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := c.writeErr(); err != nil {
		return 0, err
	}
	if c.writing {
		return 0, nil
	}
	n := c.tx.put(b, p.size)
	if n > 0 {
		p.cond.Broadcast() // bytes for a blocked reader
	}
	return n, nil
}

// Close closes c. Blocked and later calls on c fail with [net.ErrClosed];
// the peer reads what is already queued and then [io.EOF]; bytes the peer
// had queued for c are dropped and the peer's Writes fail with
// [io.ErrClosedPipe]. Closing twice returns an error wrapping
// [net.ErrClosed].
func (c *Conn) Close() error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	c.tx.wclosed = true
	c.rx.rclosed = true
	c.rx.data, c.rx.off = nil, 0
	c.rd.stop()
	c.wd.stop()
	p.cond.Broadcast()
	return nil
}

// CloseWrite shuts down the writing side, like [net.TCPConn.CloseWrite]:
// the peer reads what is queued and then [io.EOF], while c can still read.
// Later Writes on c fail with [io.ErrClosedPipe].
func (c *Conn) CloseWrite() error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	c.tx.wclosed = true
	p.cond.Broadcast()
	return nil
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both the read and the write deadline, as
// [net.Conn.SetDeadline] describes. A zero t means no deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.setDeadlines(t, true, true)
}

// SetReadDeadline sets the read deadline. Pending and future Reads fail
// with a timeout once t has passed; a zero t means no deadline. Extending
// the deadline before it passes keeps pending Reads waiting.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.setDeadlines(t, true, false)
}

// SetWriteDeadline sets the write deadline. Pending and future Writes fail
// with a timeout once t has passed, returning the count already queued; a
// zero t means no deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadlines(t, false, true)
}

func (c *Conn) setDeadlines(t time.Time, read, write bool) error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.closed {
		return c.opError("set", net.ErrClosed)
	}
	if read {
		c.set(&c.rd, t)
	}
	if write {
		c.set(&c.wd, t)
	}
	return nil
}

// set arms d for t. Called with p.mu held. The timer is made here, by the
// caller's goroutine, so inside a synctest bubble it runs on the bubble's
// clock.
func (c *Conn) set(d *deadline, t time.Time) {
	d.stop()
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		d.expired = true
		c.p.cond.Broadcast()
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		c.p.mu.Lock()
		defer c.p.mu.Unlock()
		if d.gen == gen {
			d.expired = true
			d.timer = nil
			c.p.cond.Broadcast()
		}
	})
}

// stop disarms d and clears expiry. Called with p.mu held.
func (d *deadline) stop() {
	d.gen++
	d.expired = false
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
