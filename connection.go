package warren

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Config configures a Connection. Zero fields take the defaults of
// proto/statemachine, or of the URI when dialling one.
type Config struct {
	// Auth lists the SASL mechanisms to offer in order of preference.
	// Empty: PLAIN then AMQPLAIN with the URI's credentials (guest/guest).
	Auth []statemachine.Authenticator
	// Vhost is the virtual host; empty means the URI's, or "/".
	Vhost string
	// ConnectionName is shown in RabbitMQ's management UI.
	ConnectionName string
	// Properties are extra client properties.
	Properties proto.Table
	// Heartbeat is the interval asked for (negative: none).
	Heartbeat time.Duration
	// ChannelMax and FrameMax are the limits asked for.
	ChannelMax uint16
	FrameMax   uint32
	// Locale asked for; empty means en_US.
	Locale string
	// MaxMessageSize bounds incoming message bodies (see
	// statemachine.Config.MaxMessageSize).
	MaxMessageSize uint64
	// WriteBufferLimit bounds the bytes queued for the socket; publishes
	// wait for room (honouring their context). Default 1 MiB.
	WriteBufferLimit int
	// ConsumerBuffer is the capacity of each consumer's delivery channel
	// and the default prefetch of manual-ack consumers. Default 256.
	ConsumerBuffer int
	// Logger receives the client's log lines; nil means silent.
	Logger *slog.Logger
	// Trace, when set, receives every frame sent or received.
	Trace func(dir statemachine.Direction, channel uint16, frame string)
}

const (
	defaultWriteBufferLimit = 1 << 20
	defaultConsumerBuffer   = 256
	readBufferSize          = 64 << 10
)

// Connection is an AMQP connection to a broker. It is safe for concurrent
// use by many goroutines. Its goroutines (one reader, one writer, one
// notifier) end when the connection closes.
type Connection struct {
	cfg Config
	nc  net.Conn
	raw *rawConn // reads and non-blocking direct writes through the file descriptor; nil when the transport has none
	log *slog.Logger

	mu            sync.Mutex
	m             *statemachine.Conn
	chans         map[uint16]*Channel
	opening       map[uint16]chan error // OpenChannel waiters by channel id
	waitRoom      chan struct{}         // made by a waiter; closed (and dropped) when outbound bytes are written, flow resumes or the broker unblocks
	writing       int                   // bytes taken from the machine and not yet written
	wbusy         bool                  // the writer or a direct flush owns the socket's write side
	carry         []byte                // bytes a direct flush could not write; the writer writes them first
	dbuf          []byte                // a direct flush's buffer (owned by whoever set wbusy for it)
	flushes       flushStats            // how writes were made, for tests
	blocked       bool
	err           error // why the connection closed
	connected     chan struct{}
	closeSubs     []chan *ConnectionError
	blockSubs     []chan Blocking
	secretWaiters []*waiter
	dying         chan struct{} // closed once the machine is closing or closed
	dyingOnce     sync.Once

	writeWake chan struct{}
	armed     time.Time   // the deadline the writer's timer is set for (guarded by mu)
	wtick     *time.Timer // passes the time in while a write blocks (set under mu)
	inHandler atomic.Bool // the reader is running a ConsumeOptions.Handler
	done      chan struct{}
	wg        sync.WaitGroup
	notify    notifier
	topo      topology
	connector Connector

	// Who reads the socket (readturn.go).
	rowner     readOwner     // guarded by mu
	lent       atomic.Bool   // rowner == ownNone, readable without the lock
	lendHint   atomic.Bool   // a goroutine blocked waiting for a reply while the reader read
	rwake      chan struct{} // wakes the parked reader goroutine
	handoff    []action      // a waiter's last actions, for the reader to perform (guarded by mu)
	wacts      []action      // a reading waiter's scratch (used by the socket's owner only)
	watch      ctxWatch      // a reading waiter's context (used by the socket's owner only)
	lendPeriod time.Duration // how long a lent socket may go unread (guarded by mu)
	turns      turnStats     // guarded by mu

	// Reader state, guarded by mu.
	strings frames.Interner     // repeating property strings
	intern  func([]byte) string // strings.String, bound once
	slab    []byte              // block that small delivery bodies are copied into
}

// Blocking is a connection.blocked (Active true, with the broker's
// reason) or connection.unblocked notification.
type Blocking struct {
	Active bool
	Reason string
}

// Open runs the AMQP handshake over nc, a byte stream already connected
// to the broker (a net.Conn from any transport), and returns the open
// Connection. The context bounds the handshake only. On failure nc is
// closed.
func Open(ctx context.Context, nc net.Conn, cfg Config) (*Connection, error) {
	if len(cfg.Auth) == 0 {
		cfg.Auth = []statemachine.Authenticator{
			statemachine.PlainAuth{Username: "guest", Password: "guest"},
			statemachine.AMQPlainAuth{Username: "guest", Password: "guest"},
		}
	}
	if cfg.WriteBufferLimit <= 0 {
		cfg.WriteBufferLimit = defaultWriteBufferLimit
	}
	if cfg.ConsumerBuffer <= 0 {
		cfg.ConsumerBuffer = defaultConsumerBuffer
	}
	handshakeTimeout := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		handshakeTimeout = time.Until(dl)
		if handshakeTimeout <= 0 {
			nc.Close()
			return nil, ctx.Err()
		}
	}
	m, err := statemachine.NewConn(statemachine.Config{
		Auth:             cfg.Auth,
		VirtualHost:      cfg.Vhost,
		ConnectionName:   cfg.ConnectionName,
		ClientProperties: cfg.Properties,
		ChannelMax:       cfg.ChannelMax,
		FrameMax:         cfg.FrameMax,
		Heartbeat:        cfg.Heartbeat,
		Locale:           cfg.Locale,
		HandshakeTimeout: handshakeTimeout,
		MaxMessageSize:   cfg.MaxMessageSize,
		Trace:            cfg.Trace,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Connection{
		cfg:        cfg,
		nc:         nc,
		raw:        newRawConn(nc),
		log:        log,
		m:          m,
		chans:      make(map[uint16]*Channel),
		opening:    make(map[uint16]chan error),
		connected:  make(chan struct{}),
		writeWake:  make(chan struct{}, 1),
		rwake:      make(chan struct{}, 1),
		lendPeriod: defaultLendPeriod,
		done:       make(chan struct{}),
		dying:      make(chan struct{}),
	}
	c.notify.init()
	c.intern = c.strings.String
	m.Start(time.Now())
	c.wg.Add(3)
	go c.readLoop()
	go c.writeLoop()
	go func() { defer c.wg.Done(); c.notify.run(c.done) }()
	c.wakeWriter()

	select {
	case <-c.connected:
		return c, nil
	case <-c.done:
		c.wg.Wait()
		return nil, c.err
	case <-ctx.Done():
		c.abort()
		return nil, fmt.Errorf("amqp: handshake: %w", ctx.Err())
	}
}

// abort tears the connection down without a close handshake.
func (c *Connection) abort() {
	c.mu.Lock()
	c.m.FeedEOF() // the machine reports every channel and the connection closed
	c.mu.Unlock()
	c.kickReader() // a parked reader must see it
	c.nc.Close()
	c.wg.Wait()
}

func (c *Connection) wakeWriter() {
	select {
	case c.writeWake <- struct{}{}:
	default:
	}
}

// kickReader makes whoever reads the socket drain events produced outside
// it (by a timeout or a command) even while it waits for input; a parked
// reader takes the socket back to do so.
func (c *Connection) kickReader() {
	_ = c.nc.SetReadDeadline(time.Now())
	select {
	case c.rwake <- struct{}{}:
	default:
	}
}

// readLoop reads the socket and drains the machine's events. It is the
// only goroutine that does so, except while it has lent the socket to a
// goroutine waiting for a reply (see readturn.go); deliveries always reach
// consumers from here, in order, so each consumer's channel has one
// sender.
func (c *Connection) readLoop() {
	defer c.wg.Done()
	var rd io.Reader = c.nc
	if c.raw != nil {
		rd = c.raw
	}
	park := time.NewTimer(time.Hour)
	park.Stop()
	defer park.Stop()
	var acts []action
	for {
		wake := false
		c.mu.Lock()
		if c.rowner != ownReader {
			c.mu.Unlock()
			// Lent out: wait for the socket to come back, then catch up
			// with what happened meanwhile before reading again.
			c.perform(c.awaitTurn(park))
			c.mu.Lock()
			acts = c.drainLocked(acts[:0])
			// Nothing was read, so nothing queued here: bytes queued
			// meanwhile are their maker's to flush, and waking the writer
			// would take them from under it.
			wake = c.deadlineMovedLocked()
		} else {
			// Read straight into the machine's input buffer: only the
			// socket's current reader feeds the machine or drains events.
			buf := c.m.ReadBuffer(readBufferSize)
			c.mu.Unlock()
			n, err := readInput(c.nc, rd, buf)
			c.mu.Lock()
			acts = c.ingestLocked(n, err, acts[:0])
			wake = c.writerNeededLocked()
		}
		closed := c.m.State() == statemachine.StateClosed
		wake = wake || closed
		lend := !closed && c.lendHint.Load() && c.lendHint.Swap(false)
		if lend && len(acts) == 0 {
			c.lendLocked()
			lend = false
		}
		c.mu.Unlock()
		if wake {
			c.wakeWriter()
		}
		c.perform(acts)
		clear(acts)
		if closed {
			c.mu.Lock()
			c.watch.close()
			c.mu.Unlock()
			c.shutdown()
			return
		}
		if lend { // after perform, so what it does comes before what a waiter reads next
			c.mu.Lock()
			c.lendLocked()
			c.mu.Unlock()
		}
	}
}

// readInput reads the socket into buf. A timeout is not an error: read
// deadlines only ever interrupt a read so that the reader drains events
// (kickReader) or a waiter reading for itself notices its context ended.
func readInput(nc net.Conn, rd io.Reader, buf []byte) (int, error) {
	n, err := rd.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			_ = nc.SetReadDeadline(time.Time{})
			err = nil
		}
	}
	return n, err
}

// ingestLocked feeds n bytes read (and the read's error) to the machine and
// drains its events into acts.
func (c *Connection) ingestLocked(n int, err error, acts []action) []action {
	if n > 0 {
		_ = c.m.Received(n)
	}
	if err != nil {
		c.m.FeedEOF()
	}
	return c.drainLocked(acts)
}

// shutdown runs once, in the reader, after the machine reached Closed.
func (c *Connection) shutdown() {
	c.nc.Close()
	close(c.done)
}

// writeLoop owns the clock: it writes what the machine queues and passes
// the time in at the machine's deadlines. While a write blocks (a broker
// that stops reading), a timer keeps passing the time in, so heartbeats
// and timeouts are not frozen. No write deadlines: after one expires a TLS
// connection refuses every later write.
func (c *Connection) writeLoop() {
	defer c.wg.Done()
	var out []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	c.mu.Lock()
	c.wtick = time.AfterFunc(time.Hour, c.writeTick)
	c.wtick.Stop()
	c.mu.Unlock()
	defer c.wtick.Stop()
	for {
		c.mu.Lock()
		out = out[:0]
		if !c.wbusy { // else a direct flush is writing; it wakes us when it is done
			if len(c.carry) > 0 {
				out = append(out, c.carry...)
				c.carry = nil
			}
			out = c.m.AppendOutbound(out)
			c.writing = len(out)
			c.wbusy = len(out) > 0
		}
		deadline := c.m.Deadline()
		c.armed = deadline
		closed := c.m.State() == statemachine.StateClosed
		c.mu.Unlock()

		if len(out) > 0 && !deadline.IsZero() {
			c.wtick.Reset(time.Until(deadline))
		}
		for w := 0; w < len(out); {
			n, err := c.nc.Write(out[w:])
			w += n
			c.mu.Lock()
			c.writing = len(out) - w
			c.wbusy = w < len(out)
			c.roomLocked()
			c.mu.Unlock()
			if err == nil {
				continue
			}
			c.log.Debug("amqp write failed", "error", err)
			c.mu.Lock()
			c.m.FeedEOF()
			c.mu.Unlock()
			c.kickReader()
			c.nc.Close()
			return
		}
		c.wtick.Stop()
		if closed {
			return
		}
		if !deadline.IsZero() {
			timer.Reset(time.Until(deadline))
		}
		select {
		case <-c.writeWake:
		case <-timer.C:
			c.tick()
		case <-c.done:
			return
		}
		timer.Stop()
	}
}

// writeTick passes the time in while the writer is blocked in a write,
// and re-arms itself for the machine's next deadline until the write ends
// (wbusy; a direct flush sets it too, but never blocks, and a tick before
// a deadline is harmless).
func (c *Connection) writeTick() {
	c.tick()
	c.mu.Lock()
	if d := c.m.Deadline(); c.wbusy && !d.IsZero() {
		c.wtick.Reset(time.Until(d))
	}
	c.mu.Unlock()
}

// flushDirect writes what the machine has queued from the calling
// goroutine, which is about to wait for the broker's answer, when nobody
// else is writing and the socket takes the bytes without blocking. On a
// request/response exchange, waking the writer goroutine instead costs
// more CPU than the write itself. What the socket does not take now is
// left to the writer, which also meets any write error again.
func (c *Connection) flushDirect() {
	c.mu.Lock()
	if c.raw == nil || c.wbusy || len(c.carry) > 0 || c.m.OutboundLen() == 0 || c.m.State() != statemachine.StateOpen {
		need := c.writerNeededLocked()
		c.mu.Unlock()
		if need {
			c.wakeWriter()
		}
		return
	}
	c.wbusy = true
	c.dbuf = c.m.AppendOutbound(c.dbuf[:0])
	c.writing = len(c.dbuf)
	c.mu.Unlock()

	n, _ := c.raw.tryWrite(c.dbuf)

	c.mu.Lock()
	c.wbusy = false
	c.flushes.direct++
	if n < len(c.dbuf) {
		c.flushes.partial++
		c.carry = c.dbuf[n:]
	}
	c.writing = len(c.carry)
	c.roomLocked()
	need := c.writerNeededLocked()
	c.mu.Unlock()
	if need {
		c.wakeWriter()
	}
}

// flushStats counts direct flushes (guarded by mu).
type flushStats struct {
	direct  int // writes made by flushDirect
	partial int // of which the socket took only part
}

// writerNeededLocked reports whether the writer has something to do: bytes
// to write, or a deadline earlier than the one its timer is set for. The
// reader wakes it only then, sparing a goroutine switch per read.
func (c *Connection) writerNeededLocked() bool {
	return c.m.OutboundLen() > 0 || len(c.carry) > 0 || c.deadlineMovedLocked()
}

// deadlineMovedLocked reports whether the machine's deadline is earlier
// than the one the writer's timer is set for.
func (c *Connection) deadlineMovedLocked() bool {
	d := c.m.Deadline()
	return !d.IsZero() && (c.armed.IsZero() || d.Before(c.armed))
}

// tick passes the time in and lets the reader report what it caused.
func (c *Connection) tick() {
	c.mu.Lock()
	c.m.HandleTimeout(time.Now())
	c.mu.Unlock()
	c.kickReader()
}

// roomLocked wakes publishers waiting for write-buffer room.
func (c *Connection) roomLocked() {
	if c.waitRoom != nil && c.hasRoomLocked() {
		close(c.waitRoom)
		c.waitRoom = nil
	}
}

// roomChanLocked returns the channel roomLocked closes next, making it if
// nobody waits yet (so writes cost nothing while nobody waits).
func (c *Connection) roomChanLocked() chan struct{} {
	if c.waitRoom == nil {
		c.waitRoom = make(chan struct{})
	}
	return c.waitRoom
}

func (c *Connection) hasRoomLocked() bool {
	return !c.blocked && c.m.OutboundLen()+c.writing < c.cfg.WriteBufferLimit
}

// IsAlive reports whether the connection is open (the seed's is_alive):
// false once it is closing or closed.
func (c *Connection) IsAlive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.State() == statemachine.StateOpen
}

// Err returns why the connection closed, or nil while it is open or after
// a clean Close.
func (c *Connection) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Done is closed when the connection has closed and its goroutines are
// ending.
func (c *Connection) Done() <-chan struct{} { return c.done }

// NetConn returns the underlying byte stream (the seed exposes its socket).
// Reading or writing it directly corrupts the connection.
func (c *Connection) NetConn() net.Conn { return c.nc }

// LocalAddr returns the local network address.
func (c *Connection) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the broker's network address.
func (c *Connection) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// ServerProperties returns the broker's properties from connection.start.
func (c *Connection) ServerProperties() proto.Table {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.ServerProperties()
}

// Tuning returns the negotiated channel_max, frame_max and heartbeat.
func (c *Connection) Tuning() statemachine.Tuning {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Tuning()
}

// Name returns the connection name given in Config.
func (c *Connection) Name() string { return c.cfg.ConnectionName }

// NotifyClose registers ch to receive the error that closes the
// connection (nothing after a clean Close); ch is closed afterwards. A
// slow receiver never stalls the connection: use a buffered channel.
func (c *Connection) NotifyClose(ch chan *ConnectionError) chan *ConnectionError {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		close(ch)
	default:
		c.closeSubs = append(c.closeSubs, ch)
	}
	return ch
}

// NotifyBlocked registers ch to receive connection.blocked and unblocked
// notifications; it is closed when the connection closes.
func (c *Connection) NotifyBlocked(ch chan Blocking) chan Blocking {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		close(ch)
	default:
		c.blockSubs = append(c.blockSubs, ch)
	}
	return ch
}

// Blocked reports whether the broker currently blocks the connection.
func (c *Connection) Blocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocked
}

// Close closes the connection cleanly: connection.close, then the
// broker's close-ok. It returns when the connection has closed or ctx
// ends (then the socket is closed at once). Closing a connection that has
// already closed returns nil: Err tells why it had closed.
func (c *Connection) Close(ctx context.Context) error {
	c.mu.Lock()
	err := c.m.Close(proto.Reply{Code: proto.ReplySuccess, Text: "closed by client"})
	c.mu.Unlock()
	c.kickReader()
	c.wakeWriter()
	if err != nil {
		select {
		case <-c.done:
			c.wg.Wait()
			return nil
		default:
		}
	}
	select {
	case <-c.done:
		c.wg.Wait()
		return nil
	case <-ctx.Done():
		c.nc.Close()
		c.wg.Wait()
		return ctx.Err()
	}
}

// UpdateSecret sends connection.update-secret (e.g. a refreshed OAuth 2
// token) and waits for the broker's update-secret-ok.
func (c *Connection) UpdateSecret(ctx context.Context, secret, reason string) error {
	w := &waiter{done: make(chan struct{})}
	c.mu.Lock()
	if err := c.m.UpdateSecret(secret, reason); err != nil {
		c.mu.Unlock()
		return err
	}
	c.secretWaiters = append(c.secretWaiters, w)
	c.mu.Unlock()
	c.flushDirect()
	_, err := w.wait(ctx, c)
	return err
}

func (c *Connection) closedErrLocked() error {
	if err := c.m.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}
