package driver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Handler receives what the core reports. The driver calls it from
// whichever goroutine reads the socket at the time (see the package
// documentation), never from two at once.
type Handler interface {
	// Event handles one event, in order, with the driver's lock held
	// (m is the core; its queries may be used, its commands not). It must
	// not block: resolve waiters, copy what must outlive the event (its
	// slices alias the core's buffers), post notifications without
	// waiting. Work that may block (handing a delivery to a consumer) is
	// queued for Perform; Event reports whether it queued any.
	Event(m *statemachine.Conn, e *statemachine.Event) (queued bool)
	// Perform does the work Event queued, in order, on the reader
	// goroutine and without the lock. It may block (a full consumer
	// buffer pushes back on the socket), but must return once Dying is
	// closed. It may call Lock and Unlock (a delivery handler acking).
	Perform()
}

// Flush says how the bytes a command queued get written; see Unlock.
type Flush uint8

const (
	// FlushLater leaves the bytes to the writer goroutine, which
	// coalesces everything queued into one write. For streams of
	// publishes and acks, and for calls that queue nothing.
	FlushLater Flush = iota
	// FlushNow is for a caller that waits for the broker next (an RPC, a
	// publish whose confirm it will wait for, a consumer that has caught
	// up): on a fast socket it writes the bytes itself when the socket
	// takes them without blocking, sparing a goroutine wake-up; otherwise
	// (or for what the socket does not take) the writer writes.
	FlushNow
	// FlushBatch is for a command made while Perform runs (a delivery
	// handler's ack): the reader writes every such command's bytes in one
	// go when Perform returns. Outside Perform it is FlushLater.
	FlushBatch
)

// Options configure a Driver.
type Options struct {
	// WriteBufferLimit bounds the bytes queued for the socket: RoomLocked
	// reports no room beyond it. Zero means 1 MiB.
	WriteBufferLimit int
	// Logger receives the driver's debug lines; nil means silent.
	Logger *slog.Logger
	// Mutex, when set, is the driver's lock (see Lock). A client that
	// replaces a dead driver with a new one (connection recovery) gives
	// them all the same mutex, so that the state it keeps beside the core
	// stays guarded by one lock whichever driver is current. Nil: the
	// driver has its own.
	Mutex *sync.Mutex
	// OnShutdown, when set, runs once the connection has closed and the
	// socket with it, on the reader goroutine, just before Done is
	// closed. It must not block.
	OnShutdown func()
}

const defaultWriteBufferLimit = 1 << 20

// Driver runs one core (a statemachine.Conn) over one byte stream. It
// owns both, and the goroutines, timers and buffers that move bytes and
// time between them. Its methods are safe for concurrent use.
type Driver struct {
	sock  socket
	nc    net.Conn
	h     Handler
	log   *slog.Logger
	pool  bufPool
	limit int

	mu         *sync.Mutex        // Options.Mutex, or the driver's own
	m          *statemachine.Conn // guarded by mu
	onShutdown func()
	ev         statemachine.Event // the event being handed to the Handler (guarded by mu)

	// The read side (lend.go). Guarded by mu unless atomic.
	rowner     owner
	lendHint   atomic.Bool  // a goroutine blocked in Await while the reader read
	awaiting   atomic.Int32 // goroutines in Await (incremented under mu)
	handoff    bool         // a waiter's events queued work for Perform
	performing bool         // the reader runs Perform
	batched    bool         // FlushBatch bytes wait for Perform to return
	lendPeriod time.Duration
	rwake      chan struct{} // wakes the parked reader goroutine; made when the socket is first lent
	watch      ctxWatch      // a reading waiter's context (the socket's reader only)

	// The write side and the clock (write.go), guarded by mu. (Its flags
	// and the dying flag share one word: an idle connection's footprint
	// counts every byte of the Driver.)
	wbusy         bool          // the writer goroutine or a direct flush holds the write side
	writerRunning bool          // the writer goroutine exists
	active        bool          // read or written since onIdle last looked
	stopped       bool          // shut down: no goroutine or timer starts anew
	dyingClosed   atomic.Bool   // dying is closed (markDying)
	carry         []byte        // bytes a direct flush could not write; the writer writes them first
	carryBuf      []byte        // the pooled buffer carry is part of
	writing       int           // bytes taken from the core and not yet written
	room          chan struct{} // closed when publishers may have room again
	wake          chan struct{} // wakes the writer goroutine; made when it first starts
	clock         *time.Timer   // runs onClock at the core's deadline
	armed         int64         // the deadline clock is set for (Unix ns; 0: none)
	idle          *time.Timer   // runs onIdle; nil while the connection is quiet

	dying chan struct{} // closed once the core is closing or closed, or Close/Abort was called
	done  chan struct{} // closed once the core is closed and the socket too
	wg    sync.WaitGroup
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read without reading the clock.
var aLongTimeAgo = time.Unix(1, 0)

// defaultLendPeriod bounds how long a lent socket may go unread.
const defaultLendPeriod = 5 * time.Millisecond

// New returns a driver for the core m, which must be new (statemachine
// StateNew), over nc, reporting events to h. Start starts it.
func New(nc net.Conn, m *statemachine.Conn, h Handler, opts Options) *Driver {
	return newDriver(nc, m, h, opts, nil)
}

// newDriver is New; tests wrap the socket in a double with wrap.
func newDriver(nc net.Conn, m *statemachine.Conn, h Handler, opts Options, wrap func(socket) socket) *Driver {
	d := &Driver{
		nc:         nc,
		h:          h,
		log:        opts.Logger,
		limit:      opts.WriteBufferLimit,
		mu:         opts.Mutex,
		m:          m,
		onShutdown: opts.OnShutdown,
		lendPeriod: defaultLendPeriod,
		dying:      make(chan struct{}),
		done:       make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.mu == nil {
		d.mu = new(sync.Mutex)
	}
	if d.limit <= 0 {
		d.limit = defaultWriteBufferLimit
	}
	d.sock = newSocket(nc, &d.pool)
	if wrap != nil {
		d.sock = wrap(d.sock)
	}
	return d
}

// Start starts the core (queueing the protocol header, which goes out at
// once) and the reader goroutine. The handshake then runs on its own: the
// handler sees EventConnected, or EventClosed with the reason it failed.
func (d *Driver) Start() {
	d.mu.Lock()
	d.clock = time.AfterFunc(time.Hour, d.onClock)
	d.clock.Stop()
	d.m.Start(d.now())
	d.wg.Add(1)
	go d.readLoop()
	d.unlockWrite() // the protocol header
}

// now is the one place the driver reads the clock.
func (d *Driver) now() time.Time { return time.Now() }

// Lock takes the driver's lock and returns the core. The lock guards the
// core and whatever the caller keeps beside it (the client's per-connection
// state); commands sent between Lock and Unlock are written as Unlock's
// Flush says. Do not block while holding it.
func (d *Driver) Lock() *statemachine.Conn {
	d.mu.Lock()
	return d.m
}

// Core returns the core. Call it with the lock held: taken by Lock, or
// through the shared Options.Mutex.
func (d *Driver) Core() *statemachine.Conn { return d.m }

// Unlock releases the lock taken by Lock and gets the bytes queued
// meanwhile written as f says.
func (d *Driver) Unlock(f Flush) {
	switch {
	case f == FlushBatch && d.performing:
		d.batched = d.batched || d.m.OutboundLen() > 0
		d.armClockLocked()
		d.mu.Unlock()
	case f == FlushNow:
		d.unlockWrite()
	default:
		d.unlockPoke()
	}
}

// RoomLocked reports whether channel ch may publish now: nil when it may;
// otherwise a channel that is closed when that may have changed (bytes
// were written, the broker resumed the channel's flow or unblocked the
// connection, or the connection closed). Call it between Lock and
// Unlock, and wait on the result with Await after Unlock.
func (d *Driver) RoomLocked(ch uint16) <-chan struct{} {
	if d.hasRoomLocked(ch) || d.m.State() == statemachine.StateClosed {
		return nil
	}
	if d.room == nil {
		d.room = make(chan struct{})
	}
	return d.room
}

func (d *Driver) hasRoomLocked(ch uint16) bool {
	return !d.m.Blocked() && d.m.FlowActive(ch) && d.m.OutboundLen()+d.writing < d.limit
}

// signalRoomLocked wakes the goroutines waiting for room.
func (d *Driver) signalRoomLocked() {
	if d.room != nil {
		close(d.room)
		d.room = nil
	}
}

// Dying is closed once the connection is closing or closed (or Close or
// Abort was called): work in Perform that waits must give up then.
func (d *Driver) Dying() <-chan struct{} { return d.dying }

func (d *Driver) markDying() {
	if d.dyingClosed.CompareAndSwap(false, true) {
		close(d.dying)
	}
}

// Done is closed once the core has closed and the socket with it; the
// driver's goroutines are ending.
func (d *Driver) Done() <-chan struct{} { return d.done }

// NetConn returns the byte stream. Reading or writing it directly
// corrupts the connection.
func (d *Driver) NetConn() net.Conn { return d.nc }

// Close starts the close handshake (connection.close with reply; during
// the handshake it abandons the connection) and waits until the
// connection has closed or ctx ends, in which case it closes the socket
// at once. Either way the driver's goroutines have ended when it returns.
// It returns ctx's error if ctx ended first, an error wrapping
// statemachine.ErrCloseTimeout if the broker never answered close-ok
// within the core's CloseTimeout after this call began the close, else
// nil.
func (d *Driver) Close(ctx context.Context, reply proto.Reply) error {
	d.markDying()
	d.mu.Lock()
	started := d.m.Close(reply) == nil // else it is closing or closed already
	d.unlockPoke()
	d.kick()
	var err error
	select {
	case <-d.done:
		d.mu.Lock()
		if e := d.m.Err(); started && errors.Is(e, statemachine.ErrCloseTimeout) {
			err = e // closed, but the broker never said close-ok
		}
		d.mu.Unlock()
	case <-ctx.Done():
		err = ctx.Err()
		_ = d.sock.close()
	}
	d.wg.Wait()
	return err
}

// Abort ends the connection without a close handshake: the socket is
// closed and the core reports every channel and the connection closed.
// It returns when the driver's goroutines have ended.
func (d *Driver) Abort() {
	d.markDying()
	d.mu.Lock()
	d.m.FeedEOF()
	d.mu.Unlock()
	d.kick()
	_ = d.sock.close()
	d.wg.Wait()
}

// Wait waits until the driver's goroutines have ended (after Done).
func (d *Driver) Wait() { d.wg.Wait() }

// kick makes whoever reads the socket drain events that were produced
// outside a read (a timeout, Close) even while it waits for input; a
// parked reader takes the socket back to do so.
func (d *Driver) kick() {
	_ = d.sock.setReadDeadline(aLongTimeAgo)
	d.mu.Lock()
	d.wakeReaderLocked()
	d.mu.Unlock()
}

// wakeReaderLocked wakes the reader goroutine if it is parked.
func (d *Driver) wakeReaderLocked() {
	if d.rwake == nil {
		return // never lent: never parked
	}
	select {
	case d.rwake <- struct{}{}:
	default:
	}
}
