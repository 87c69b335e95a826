package warren

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Config configures a Connection. Zero fields take the defaults of
// proto/statemachine, or of the URI when dialling one.
type Config struct {
	// Auth lists the SASL mechanisms to offer in order of preference
	// (PlainAuth, AMQPlainAuth, ExternalAuth or your own Authenticator).
	// Empty: PLAIN then AMQPLAIN with the URI's credentials (guest/guest).
	Auth []Authenticator
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
	// MaxMessageSize bounds incoming message bodies: a larger message is
	// skipped (and rejected without requeue if it awaits an ack) before
	// anything that size is allocated. Zero means 128 MiB.
	MaxMessageSize uint64
	// WriteBufferLimit bounds the bytes queued for the socket; publishes
	// wait for room (honouring their context). Default 1 MiB.
	WriteBufferLimit int
	// ConsumerBuffer is the capacity of each consumer's delivery channel
	// and the default prefetch of manual-ack consumers. Default 256.
	ConsumerBuffer int
	// Logger receives the client's log lines; nil means silent.
	Logger *slog.Logger
	// Trace, when set, receives every frame sent or received, one line
	// each (credentials redacted). It runs with the connection's lock held:
	// keep it quick and do not call back into the connection.
	Trace func(dir Direction, channel uint16, frame string)
}

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
// A Connection is a handle over one driver (internal/driver), which owns
// the socket, the protocol core and the goroutines that move bytes and
// time; see the package documentation for how they work together. What the
// Connection keeps itself is the application's side: its channels,
// consumers, the requests it waits for, its listeners, and what it
// declared.
type Connection struct {
	cfg       Config
	log       *slog.Logger
	d         *driver.Driver
	connector Connector
	topo      topology

	// Guarded by the driver's lock: held between d.Lock and d.Unlock, and
	// while the driver calls the handler's Event.
	chans          map[uint16]*Channel   // the open (or opening) incarnations, by id
	between        map[*Channel]struct{} // Channels between incarnations (closed by an error, not reopened yet)
	requests       map[statemachine.Token]*waiter
	connected      chan struct{} // closed when the handshake ends, either way
	opened         bool          // the handshake succeeded
	ended          bool          // EventClosed was handled
	err            error         // why the connection closed
	closeListeners []*listener[error]
	blockListeners []*listener[Blocking]

	// Owned by the goroutine reading the socket (driver.Handler's
	// contract): Event fills acts and Perform empties them.
	acts    []action
	strings frames.Interner
	intern  func([]byte) string // strings.String, bound once
	slab    []byte              // block that small delivery bodies are copied into

	inHandler atomic.Bool // a ConsumeOptions.Handler runs on the reader goroutine
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
// closed.
func Open(ctx context.Context, nc net.Conn, cfg Config) (*Connection, error) {
	if len(cfg.Auth) == 0 {
		cfg.Auth = []Authenticator{
			PlainAuth{Username: "guest", Password: "guest"},
			AMQPlainAuth{Username: "guest", Password: "guest"},
		}
	}
	if cfg.ConsumerBuffer <= 0 {
		cfg.ConsumerBuffer = defaultConsumerBuffer
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Connection{
		cfg:       cfg,
		log:       log,
		chans:     make(map[uint16]*Channel),
		requests:  make(map[statemachine.Token]*waiter),
		connected: make(chan struct{}),
	}
	c.intern = c.strings.String
	c.d = driver.New(nc, m, (*events)(c), driver.Options{WriteBufferLimit: cfg.WriteBufferLimit, Logger: log})
	c.d.Start()

	if err := c.d.Await(ctx, c.connected); err != nil {
		c.d.Abort()
		return nil, fmt.Errorf("amqp: handshake: %w", err)
	}
	c.d.Lock()
	ok, herr := c.opened, c.err
	c.connected = nil // closed, and never needed again
	c.d.Unlock(driver.FlushLater)
	if !ok {
		c.d.Wait()
		return nil, herr
	}
	return c, nil
}

// IsAlive reports whether the connection is open: false once it is
// closing or closed.
func (c *Connection) IsAlive() bool {
	m := c.d.Lock()
	defer c.d.Unlock(driver.FlushLater)
	return m.State() == statemachine.StateOpen
}

// Err returns why the connection closed, or nil while it is open or after
// a clean Close. The error matches ErrConnectionLost or
// ErrHeartbeatTimeout with errors.Is when the network failed, and is a
// *ConnectionError (errors.As) when the broker or Warren closed it.
func (c *Connection) Err() error {
	select {
	case <-c.d.Done():
	default:
		return nil
	}
	c.d.Lock()
	defer c.d.Unlock(driver.FlushLater)
	return c.err
}

// Done is closed when the connection has closed and its goroutines are
// ending.
func (c *Connection) Done() <-chan struct{} { return c.d.Done() }

// NetConn returns the underlying byte stream. Reading or writing it
// directly corrupts the connection.
func (c *Connection) NetConn() net.Conn { return c.d.NetConn() }

// LocalAddr returns the local network address.
func (c *Connection) LocalAddr() net.Addr { return c.d.NetConn().LocalAddr() }

// RemoteAddr returns the broker's network address.
func (c *Connection) RemoteAddr() net.Addr { return c.d.NetConn().RemoteAddr() }

// ServerProperties returns the broker's properties from connection.start.
// The table is shared: do not modify it.
func (c *Connection) ServerProperties() proto.Table {
	m := c.d.Lock()
	defer c.d.Unlock(driver.FlushLater)
	return m.ServerProperties()
}

// Tuning returns the negotiated channel_max, frame_max and heartbeat.
func (c *Connection) Tuning() Tuning {
	m := c.d.Lock()
	defer c.d.Unlock(driver.FlushLater)
	return m.Tuning()
}

// Name returns the connection name given in Config.
func (c *Connection) Name() string { return c.cfg.ConnectionName }

// NotifyClose registers ch to receive the error that closes the
// connection, then closes ch; after a clean Close, ch is closed without a
// value. The error is the one Err returns: errors.Is(err,
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
	c.d.Lock()
	if c.ended {
		c.d.Unlock(driver.FlushLater)
		if c.err != nil {
			l.post(c.err)
		}
		l.close()
		return ch
	}
	c.closeListeners = append(c.closeListeners, l)
	c.d.Unlock(driver.FlushLater)
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
	c.d.Lock()
	if c.ended {
		c.d.Unlock(driver.FlushLater)
		l.close()
		return ch
	}
	c.blockListeners = append(c.blockListeners, l)
	c.d.Unlock(driver.FlushLater)
	return ch
}

// foldBlocking folds a notification a listener has not yet received into
// the next one.
func foldBlocking(old, b Blocking) Blocking {
	b.Changes += old.Changes
	return b
}

// Blocked reports whether the broker currently blocks the connection.
func (c *Connection) Blocked() bool {
	m := c.d.Lock()
	defer c.d.Unlock(driver.FlushLater)
	return m.Blocked()
}

// Close closes the connection cleanly: connection.close, then the
// broker's close-ok. It returns when the connection has closed or ctx
// ends (then the socket is closed at once, and Close returns ctx's
// error). Either way the connection's goroutines have ended. Closing a
// connection that has already closed returns nil: Err tells why it had
// closed.
func (c *Connection) Close(ctx context.Context) error {
	return c.d.Close(ctx, proto.Reply{Code: proto.ReplySuccess, Text: "closed by client"})
}

// UpdateSecret sends connection.update-secret (e.g. a refreshed OAuth 2
// token) and waits for the broker's update-secret-ok.
func (c *Connection) UpdateSecret(ctx context.Context, secret, reason string) error {
	m := c.d.Lock()
	tok, err := m.UpdateSecret(secret, reason)
	if err != nil {
		c.d.Unlock(driver.FlushLater)
		return err
	}
	w, err := c.awaitReplyLocked(ctx, nil, tok)
	if err != nil {
		return err
	}
	return w.err
}

// closedErrLocked is the error for a call made after the connection
// closed.
func (c *Connection) closedErrLocked(m *statemachine.Conn) error {
	if err := m.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}
