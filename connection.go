package warren

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Config configures a Connection. Zero fields take the defaults of
// proto/statemachine, or of the URI when dialling one.
type Config struct {
	// Auth lists the SASL mechanisms to offer in order of preference
	// (PlainAuth, AMQPlainAuth, ExternalAuth or your own Authenticator).
	// Empty: PLAIN then AMQPLAIN with the URI's credentials (guest/guest).
	Auth []Authenticator
	// Credentials, when set, supplies the username and secret (SASL
	// PLAIN) instead of Auth and the URI's: asked before every connection
	// attempt, the first and each recovery's, and again before the secret
	// expires (at four fifths of its lifetime), when the new secret goes
	// to the broker with connection.update-secret. A failed refresh is
	// logged and retried until the secret expires, then the connection
	// ends with ErrCredentialsExpired. A broker that refuses the new
	// secret closes the connection (530); recovery then dials with fresh
	// credentials.
	Credentials CredentialsProvider
	// Vhost is the virtual host; empty means the URI's, or "/".
	Vhost string
	// ConnectionName is shown in RabbitMQ's management UI.
	ConnectionName string
	// Properties are extra client properties.
	Properties proto.Table
	// Heartbeat is the heartbeat interval asked for, in whole seconds:
	// the lower non-zero value of this and the broker's proposal wins.
	// Zero means 60 s; negative asks for none, which the broker then
	// neither sends nor expects (a URI's heartbeat=0 means the same).
	Heartbeat time.Duration
	// ChannelMax and FrameMax are the limits asked for.
	ChannelMax uint16
	FrameMax   uint32
	// Locale asked for; empty means en_US.
	Locale string
	// MaxMessageSize bounds incoming message bodies: a larger message is
	// skipped (and rejected without requeue if it awaits an ack) before
	// anything that size is allocated, and logged. Zero means
	// DefaultMaxMessageSize.
	MaxMessageSize uint64
	// WriteBufferLimit bounds the bytes queued for the socket; publishes
	// wait for room (honouring their context). Default 1 MiB.
	WriteBufferLimit int
	// ConsumerBuffer is the capacity of each consumer's delivery channel
	// and the default prefetch of manual-ack consumers. Default 256.
	ConsumerBuffer int
	// Recovery configures automatic recovery after a connection loss
	// (on by default for Dial, DialWith, DialAny and Connect).
	Recovery Recovery
	// Logger receives the client's log lines; nil means silent.
	Logger *slog.Logger
	// Trace, when set, receives every frame sent or received, one line
	// each (credentials redacted). It runs with the connection's lock held:
	// keep it quick and do not call back into the connection.
	Trace func(dir Direction, channel uint16, frame string)
	// Observer, when set, is told of publishes, confirms, returns,
	// deliveries, acknowledgements and the connection's events, for
	// tracing and metrics (see Observer for where its hooks run). Nil: no
	// cost at all.
	Observer Observer
}

// DefaultMaxMessageSize is the largest incoming message body accepted
// when Config.MaxMessageSize is zero: 128 MiB, RabbitMQ's own default
// max_message_size, so that whatever the broker accepts by default
// arrives. (The protocol core's statemachine.DefaultMaxMessageSize; this
// is the one place the default is set.)
const DefaultMaxMessageSize = statemachine.DefaultMaxMessageSize

// Types of the protocol core that a Config and a Connection use, so that
// a program needs only this package and proto.
type (
	// Authenticator is one SASL mechanism (see Config.Auth).
	Authenticator = statemachine.Authenticator
	// PlainAuth is SASL PLAIN with a username and password.
	PlainAuth = statemachine.PlainAuth
	// AMQPlainAuth is RabbitMQ's AMQPLAIN with a username and password.
	AMQPlainAuth = statemachine.AMQPlainAuth
	// ExternalAuth is SASL EXTERNAL: the broker authenticates the TLS
	// client certificate.
	ExternalAuth = statemachine.ExternalAuth
	// Tuning holds the negotiated channel_max, frame_max and heartbeat.
	Tuning = statemachine.Tuning
	// Direction says which way a traced frame travelled (Config.Trace).
	Direction = statemachine.Direction
)

// The directions of Config.Trace.
const (
	Received = statemachine.Received // from the broker
	Sent     = statemachine.Sent     // to the broker
)

const (
	defaultConsumerBuffer = 256
)

// Connection is an AMQP connection to a broker. It is safe for concurrent
// use by many goroutines.
//
// A Connection is a handle over one driver at a time (internal/driver),
// which owns the socket, the protocol core and the goroutines that move
// bytes and time; see the package documentation for how they work
// together. What the Connection keeps itself is the application's side:
// its channels, consumers, the requests it waits for, its listeners, and
// what it declared. When the connection is lost and recovery is on (see
// Recovery), a new driver replaces the dead one under the same handles.
type Connection struct {
	cfg       Config
	log       *slog.Logger
	endpoints []endpoint // where recovery dials; empty for Open (no recovery)
	topo      lazyTopology

	// mu is the lock of every driver this connection has had
	// (driver.Options.Mutex): it guards the current core and everything
	// below, whichever driver is current.
	mu   sync.Mutex
	d    atomic.Pointer[driver.Driver] // the current driver; replaced under mu
	done atomic.Pointer[chan struct{}] // Done's channel, made by its first call (closeDone)

	// Guarded by mu (and, as fields the footprint of an idle connection
	// counts, packed: the flags share a word).
	cur           *endpoint                // the endpoint connected to (an element of endpoints); nil for Open
	state         ConnState                // open, recovering or closed
	shuffle       bool                     // each recovery walks the endpoints in a new random order (set once)
	userClosed    bool                     // Close was called
	blocked       bool                     // the broker blocks the current connection
	ended         bool                     // the connection has ended for good
	secretPending uint16                   // update-secret requests awaiting their reply (in the flags' word)
	gate          chan struct{}            // while recovering: closed when calls may go on
	recCancel     context.CancelFunc       // stops the recovery goroutine
	recDone       chan struct{}            // closed when the recovery goroutine has ended; nil when none runs
	lostAt        int64                    // when the connection was last lost (Unix ns)
	creds         *credState               // Config.Credentials's refresh; nil without a provider
	chans         map[uint16]*Channel      // the open (or opening) incarnations, by id
	between       map[*Channel]struct{}    // Channels between incarnations (closed by an error, not reopened yet)
	ending        map[*Channel][]*consumer // consumers a recovery gave up on: they end when their channel next opens
	requests      map[statemachine.Token]*waiter
	err           error          // why it ended
	lis           *connListeners // NotifyClose, NotifyBlocked and NotifyRecovery's; nil until the first

	// Owned by the goroutine reading the socket (driver.Handler's
	// contract): Event fills acts and Perform empties them. A new driver
	// starts only once the last one's goroutines have ended.
	acts   []action
	intern func([]byte) string // a frames.Interner's String, made on the first delivery: an idle connection does without
	slab   []byte              // block that small delivery bodies are copied into

	inHandler atomic.Bool   // a ConsumeOptions.Handler runs on the reader goroutine
	doneState atomic.Uint32 // doneEnded, doneChanClosed (closeDone)
}

// ConnState is the state of a Connection: see Connection.State.
type ConnState uint8

// The states of a Connection.
const (
	// ConnOpen: the connection is open and calls go out at once.
	ConnOpen ConnState = iota
	// ConnRecovering: the connection was lost and recovery is dialling
	// and restoring; calls wait for it (bounded by their contexts), or
	// fail with ErrRecovering under Recovery.FailFast.
	ConnRecovering
	// ConnClosed: the connection has ended for good (Close, recovery
	// gave up, or a loss with recovery off).
	ConnClosed
)

// String returns "open", "recovering" or "closed".
func (s ConnState) String() string {
	switch s {
	case ConnOpen:
		return "open"
	case ConnRecovering:
		return "recovering"
	case ConnClosed:
		return "closed"
	}
	return fmt.Sprintf("ConnState(%d)", uint8(s))
}

// Blocking is a connection.blocked (Active true, with the broker's
// reason) or connection.unblocked notification.
type Blocking struct {
	Active bool
	Reason string
	// Changes counts the blocked/unblocked changes this notification
	// stands for: 1, unless the listener had not yet received earlier
	// ones, which were then folded into this latest state.
	Changes int
}

// Open runs the AMQP handshake over nc, a byte stream already connected
// to the broker (a net.Conn from any transport), and returns the open
// Connection. The context bounds the handshake only. On failure nc is
// closed. A Connection opened this way cannot dial again, so it does not
// recover: use Connect, Dial or DialWith for that.
func Open(ctx context.Context, nc net.Conn, cfg Config) (*Connection, error) {
	return open(ctx, nc, cfg, nil)
}

// open makes the Connection and runs the first handshake; eps are the
// endpoints recovery may dial (none: no recovery).
func open(ctx context.Context, nc net.Conn, cfg Config, eps []endpoint) (*Connection, error) {
	cfg = withDefaults(cfg)
	cfg.Recovery = cfg.Recovery.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Connection{
		cfg:       cfg,
		log:       log,
		endpoints: eps,
		chans:     make(map[uint16]*Channel),
		requests:  make(map[statemachine.Token]*waiter),
	}
	if cfg.Credentials != nil {
		c.creds = &credState{}
	}
	if _, err := c.handshake(ctx, nc, cfg); err != nil {
		if c.creds != nil {
			c.creds.stopRefresh()
		}
		return nil, err
	}
	return c, nil
}

// withDefaults fills in Config's defaults.
func withDefaults(cfg Config) Config {
	if len(cfg.Auth) == 0 {
		cfg.Auth = []Authenticator{
			PlainAuth{Username: "guest", Password: "guest"},
			AMQPlainAuth{Username: "guest", Password: "guest"},
		}
	}
	if cfg.ConsumerBuffer <= 0 {
		cfg.ConsumerBuffer = defaultConsumerBuffer
	}
	return cfg
}

// handshake makes a new core and driver over nc, makes the driver
// current, and runs the AMQP handshake within ctx. On failure nc is
// closed and the driver's goroutines have ended.
func (c *Connection) handshake(ctx context.Context, nc net.Conn, cfg Config) (*driver.Driver, error) {
	if cfg.Credentials != nil {
		auth, err := c.credentialsFor(ctx)
		if err != nil {
			nc.Close()
			return nil, err
		}
		cfg.Auth = auth
	}
	handshakeTimeout := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		handshakeTimeout = time.Until(dl)
		if handshakeTimeout <= 0 {
			nc.Close()
			return nil, fmt.Errorf("amqp: handshake: %w", ctx.Err())
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
	h := &events{c: c, connected: make(chan struct{})}
	d := driver.New(nc, m, h, driver.Options{
		WriteBufferLimit: cfg.WriteBufferLimit, Logger: c.log, Mutex: &c.mu, OnShutdown: h.shutdown,
	})
	h.d = d
	// Current before it starts: its events are this connection's. (The
	// last driver's goroutines have ended; calls wait for the handshake,
	// and for a recovery's restoring, at the gate.)
	c.mu.Lock()
	c.d.Store(d)
	c.mu.Unlock()
	d.Start()
	if err := d.Await(ctx, h.connected); err != nil {
		d.Abort()
		return nil, fmt.Errorf("amqp: handshake: %w", err)
	}
	c.mu.Lock()
	ok, herr := h.opened, h.err
	h.connected = nil // closed, and needed no more
	c.mu.Unlock()
	if !ok {
		d.Wait()
		return nil, herr
	}
	if obs := c.cfg.Observer; obs != nil {
		obs.Connection(ConnectionEvent{Kind: ConnectionOpened, Address: nc.RemoteAddr().String()})
	}
	return d, nil
}

// drv returns the current driver.
func (c *Connection) drv() *driver.Driver { return c.d.Load() }

// lock takes the connection's lock (every driver's) and returns the
// current core.
func (c *Connection) lock() *statemachine.Conn {
	c.mu.Lock()
	return c.d.Load().Core()
}

// unlock releases the lock, writing what was queued meanwhile as f says
// (see driver.Flush).
func (c *Connection) unlock(f driver.Flush) { c.d.Load().Unlock(f) }

// await waits until done is closed or ctx ends (see driver.Await).
func (c *Connection) await(ctx context.Context, done <-chan struct{}) error {
	return c.d.Load().Await(ctx, done)
}

// IsAlive reports whether the connection is open: false while it is
// recovering, closing or closed.
func (c *Connection) IsAlive() bool {
	m := c.lock()
	defer c.unlock(driver.FlushLater)
	return c.state == ConnOpen && m.State() == statemachine.StateOpen
}

// State reports whether the connection is open, recovering or closed.
func (c *Connection) State() ConnState {
	c.lock()
	defer c.unlock(driver.FlushLater)
	return c.state
}

// Err returns why the connection ended, or nil while it is open or
// recovering, and after a clean Close. The error matches
// ErrConnectionLost or ErrHeartbeatTimeout with errors.Is when the
// network failed, and is a *ConnectionError (errors.As) when the broker
// or Warren closed it; when recovery gave up it wraps ErrGaveUp and the
// last attempt's error.
func (c *Connection) Err() error {
	if c.doneState.Load()&doneEnded == 0 {
		return nil
	}
	c.lock()
	defer c.unlock(driver.FlushLater)
	return c.err
}

// Done is closed when the connection has ended for good and its
// goroutines are ending. A loss that recovery handles does not close it.
func (c *Connection) Done() <-chan struct{} {
	if p := c.done.Load(); p != nil {
		return *p
	}
	// Made on demand: a connection nobody asks costs no channel.
	ch := make(chan struct{})
	if !c.done.CompareAndSwap(nil, &ch) {
		return *c.done.Load()
	}
	if c.doneState.Load()&doneEnded != 0 { // ended meanwhile: closeDone may have missed it
		c.closeDoneChan()
	}
	return ch
}

// Bits of Connection.doneState.
const (
	doneEnded      = 1 << iota // the connection has ended for good
	doneChanClosed             // Done's channel is closed
)

// closeDone marks the connection ended for good and closes Done's
// channel if it was made (else Done makes it closed). Whichever of
// closeDone and the first Done runs second sees the other's write, so
// the channel is always closed, once.
func (c *Connection) closeDone() {
	for {
		s := c.doneState.Load()
		if s&doneEnded != 0 {
			return
		}
		if c.doneState.CompareAndSwap(s, s|doneEnded) {
			break
		}
	}
	c.closeDoneChan()
}

// closeDoneChan closes Done's channel, if made, once.
func (c *Connection) closeDoneChan() {
	p := c.done.Load()
	if p == nil {
		return
	}
	for {
		s := c.doneState.Load()
		if s&doneChanClosed != 0 {
			return
		}
		if c.doneState.CompareAndSwap(s, s|doneChanClosed) {
			close(*p)
			return
		}
	}
}

// NetConn returns the current underlying byte stream (a recovery
// replaces it). Reading or writing it directly corrupts the connection.
func (c *Connection) NetConn() net.Conn { return c.drv().NetConn() }

// LocalAddr returns the local network address.
func (c *Connection) LocalAddr() net.Addr { return c.drv().NetConn().LocalAddr() }

// RemoteAddr returns the broker's network address.
func (c *Connection) RemoteAddr() net.Addr { return c.drv().NetConn().RemoteAddr() }

// ServerProperties returns the broker's properties from connection.start.
// The table is shared: do not modify it.
func (c *Connection) ServerProperties() proto.Table {
	m := c.lock()
	defer c.unlock(driver.FlushLater)
	return m.ServerProperties()
}

// Tuning returns the negotiated channel_max, frame_max and heartbeat.
func (c *Connection) Tuning() Tuning {
	m := c.lock()
	defer c.unlock(driver.FlushLater)
	return m.Tuning()
}

// Name returns the connection name given in Config.
func (c *Connection) Name() string { return c.cfg.ConnectionName }

// NotifyClose registers ch to receive the error that ends the
// connection for good, then closes ch; after a clean Close, ch is closed
// without a value. A loss that recovery handles is not reported here
// (see NotifyRecovery): ch hears of the connection once, when it ends
// for good, so reconnecting code written for other clients does not
// reconnect a second time. The error is the one Err returns: errors.Is(err,
// ErrConnectionLost) after a network failure, errors.Is(err,
// ErrHeartbeatTimeout) when the broker went silent, errors.As into a
// *ConnectionError when the broker (or Warren) closed the connection.
//
// The notification is never dropped and never stalls the connection: if
// ch has no room it is held until ch is received from (so keep receiving
// until ch closes, or give ch a buffer of 1). Registering on a closed
// connection delivers at once. It returns ch.
func (c *Connection) NotifyClose(ch chan error) chan error {
	l := newChanListener(ch, c.log, "close")
	c.lock()
	if c.ended {
		c.unlock(driver.FlushLater)
		if c.err != nil {
			l.post(c.err)
		}
		l.close()
		return ch
	}
	ls := c.listenersLocked()
	ls.close = append(ls.close, l)
	c.unlock(driver.FlushLater)
	return ch
}

// NotifyBlocked registers ch to receive connection.blocked and
// connection.unblocked notifications, in order; ch is closed when the
// connection closes. Notifications are never dropped and never stall the
// connection: while ch has no room they are held, and those not yet
// received fold into the latest state (Blocking.Changes counts them), so
// the last value received is always the current state. It returns ch.
func (c *Connection) NotifyBlocked(ch chan Blocking) chan Blocking {
	l := newChanListener(ch, c.log, "blocked")
	l.fold = foldBlocking
	c.lock()
	if c.ended {
		c.unlock(driver.FlushLater)
		l.close()
		return ch
	}
	ls := c.listenersLocked()
	ls.block = append(ls.block, l)
	c.unlock(driver.FlushLater)
	return ch
}

// foldBlocking folds a notification a listener has not yet received into
// the next one.
func foldBlocking(old, b Blocking) Blocking {
	b.Changes += old.Changes
	return b
}

// Blocked reports whether the broker currently blocks the connection
// (false while it is recovering: a new connection starts unblocked).
func (c *Connection) Blocked() bool {
	m := c.lock()
	defer c.unlock(driver.FlushLater)
	return c.state == ConnOpen && m.Blocked()
}

// Close closes the connection cleanly: connection.close, then the
// broker's close-ok. It returns when the connection has closed or ctx
// ends (then the socket is closed at once, and Close returns ctx's
// error; a broker that never answers close-ok is given 10 s, and then
// Close returns an error wrapping ErrCloseTimeout). Either way the
// connection is closed and its goroutines have ended. Closing a
// connection that has already closed returns nil: Err tells why it had
// closed.
//
// During a recovery, Close stops it at once (also mid-backoff or
// mid-handshake): every call waiting for the recovery fails with
// ErrClosed, and Close returns when the recovery's goroutine has ended.
func (c *Connection) Close(ctx context.Context) error {
	c.mu.Lock()
	c.userClosed = true
	if c.state == ConnRecovering {
		c.recCancel()
		c.mu.Unlock()
		return c.waitRecovery(ctx)
	}
	d := c.d.Load()
	c.mu.Unlock()
	err := d.Close(ctx, proto.Reply{Code: proto.ReplySuccess, Text: "closed by client"})
	// A loss just before Close may have started a recovery, which sees
	// userClosed and stops.
	if werr := c.waitRecovery(ctx); err == nil {
		err = werr
	}
	return err
}

// UpdateSecret sends connection.update-secret (e.g. a refreshed OAuth 2
// token) and waits for the broker's update-secret-ok.
//
// A broker that refuses the secret closes the connection with 530
// NOT_ALLOWED; recovery treats that as recoverable (ErrSecretRefused) and
// dials again with the configured credentials.
func (c *Connection) UpdateSecret(ctx context.Context, secret, reason string) error {
	c.mu.Lock()
	m, err := c.waitOpenLocked(ctx)
	if err != nil {
		return err
	}
	tok, err := m.UpdateSecret(secret, reason)
	if err != nil {
		c.unlock(driver.FlushLater)
		return err
	}
	c.secretPending++
	w, err := c.awaitWaiterLocked(ctx, &waiter{secret: true, done: make(chan struct{})}, tok)
	if err != nil {
		return err
	}
	return w.err
}

// closedErrLocked is the error for a call made after the connection
// closed.
func (c *Connection) closedErrLocked(m *statemachine.Conn) error {
	if c.ended {
		if c.err != nil {
			return fmt.Errorf("%w: %w", ErrClosed, c.err)
		}
		return ErrClosed
	}
	if err := m.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}

// waitOpenLocked waits, called with the lock held, until the connection
// is open: while it recovers, until the recovery ends (or at once with
// ErrRecovering under Recovery.FailFast). It returns the current core
// with the lock still held, or releases the lock and returns why the
// call cannot go out (ctx's error, or ErrClosed wrapping why the
// connection ended).
func (c *Connection) waitOpenLocked(ctx context.Context) (*statemachine.Conn, error) {
	for {
		d := c.d.Load()
		m := d.Core()
		var wait <-chan struct{}
		switch {
		case c.state == ConnOpen && m.State() == statemachine.StateOpen:
			return m, nil
		case c.state == ConnRecovering:
			if c.cfg.Recovery.FailFast {
				c.unlock(driver.FlushLater)
				return nil, ErrRecovering
			}
			wait = c.gate
		case c.state == ConnOpen && m.Err() != nil && c.recoversLocked(m.Err()):
			// Lost, and the loss is not handled yet: a recovery follows.
			wait = d.Done()
		default:
			err := c.closedErrLocked(m)
			c.unlock(driver.FlushLater)
			return nil, err
		}
		c.unlock(driver.FlushLater)
		if err := d.Await(ctx, wait); err != nil {
			return nil, err
		}
		c.mu.Lock()
	}
}
