package statemachine

import (
	"errors"
	"fmt"
	"time"

	"github.com/warren-amqp/warren/proto"
)

// Version is the client version Warren reports in its client properties.
const Version = "0.1.0"

// Defaults used when a Config field is zero.
const (
	DefaultChannelMax       = 2047
	DefaultFrameMax         = 131072
	DefaultHeartbeat        = 60 * time.Second
	DefaultHeartbeatMisses  = 2
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultCloseTimeout     = 10 * time.Second
	DefaultMaxMessageSize   = 128 << 20
	DefaultLocale           = "en_US"
)

// Config configures a client connection. The zero value of every field but
// Auth picks a sensible default.
type Config struct {
	// Auth lists the SASL mechanisms to offer, in order of preference; the
	// first one the server also lists is used. Required.
	Auth []Authenticator
	// VirtualHost to open; empty means "/".
	VirtualHost string
	// ConnectionName is reported to the broker as connection_name (shown
	// in the management UI).
	ConnectionName string
	// ClientProperties are added to the properties Warren sends (product,
	// version, platform, capabilities, connection_name); a field here
	// replaces Warren's field of the same name.
	ClientProperties proto.Table
	// ChannelMax is the highest channel id we want; the lower of ours and
	// the server's wins, and 0 on one side means the other side's value.
	// Zero here means DefaultChannelMax; NoLimit asks for no limit.
	ChannelMax uint16
	// FrameMax is the largest frame we accept, negotiated like ChannelMax.
	// Zero means DefaultFrameMax; it is never below 4096.
	FrameMax uint32
	// Heartbeat is the interval we ask for, in whole seconds: the lower
	// non-zero value of ours and the server's proposal wins (the server's
	// when it proposes 0). Zero means DefaultHeartbeat. A negative value
	// asks for no heartbeats: tune-ok carries 0, whatever the server
	// proposed, and none are sent or expected (RabbitMQ honours it).
	Heartbeat time.Duration
	// HeartbeatMisses is how many heartbeat intervals may pass with nothing
	// received before the peer is declared dead (py-amqp's heartbeat_tick
	// rate). Zero means DefaultHeartbeatMisses.
	HeartbeatMisses int
	// Locale requested; the server's first locale is used when it does not
	// offer this one. Empty means DefaultLocale.
	Locale string
	// HandshakeTimeout bounds the time from Start to connection.open-ok.
	HandshakeTimeout time.Duration
	// CloseTimeout bounds the wait for close-ok after we send a close.
	CloseTimeout time.Duration
	// MaxMessageSize is the largest message body accepted. A content header
	// announcing more is refused before anything that size is allocated:
	// the message is skipped, reported as EventMessageTooLarge, and (for a
	// delivery or get-ok that needs an ack) rejected without requeue so
	// that it cannot loop. Zero means DefaultMaxMessageSize.
	MaxMessageSize uint64
	// Trace, when set, is called for every frame sent or received, with a
	// one-line description (pgproto3's Trace, libpq's PQtrace). It must not
	// call back into the Conn.
	Trace func(dir Direction, channel uint16, frame string)
}

// NoLimit asks for no channel limit in Config.ChannelMax.
const NoLimit = 0xFFFF

// Direction says which way a traced frame travelled.
type Direction uint8

// The two directions of Config.Trace.
const (
	Received Direction = iota // from the server
	Sent                      // to the server
)

// String returns "<-" for received and "->" for sent frames.
func (d Direction) String() string {
	if d == Sent {
		return "->"
	}
	return "<-"
}

// ErrNoAuth reports a Config without authenticators.
var ErrNoAuth = errors.New("amqp: config has no authentication mechanism")

func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Auth) == 0 {
		return cfg, ErrNoAuth
	}
	for i, a := range cfg.Auth {
		if a == nil {
			return cfg, fmt.Errorf("amqp: config Auth[%d] is nil", i)
		}
	}
	if cfg.VirtualHost == "" {
		cfg.VirtualHost = "/"
	}
	if cfg.ChannelMax == 0 {
		cfg.ChannelMax = DefaultChannelMax
	}
	if cfg.FrameMax == 0 {
		cfg.FrameMax = DefaultFrameMax
	}
	if cfg.FrameMax < 4096 {
		cfg.FrameMax = 4096
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.HeartbeatMisses <= 0 {
		cfg.HeartbeatMisses = DefaultHeartbeatMisses
	}
	if cfg.Locale == "" {
		cfg.Locale = DefaultLocale
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	return cfg, nil
}

// clientProperties builds the table sent in connection.start-ok.
func (cfg *Config) clientProperties() proto.Table {
	caps := proto.Table{
		{Name: "publisher_confirms", Value: proto.Bool(true)},
		{Name: "exchange_exchange_bindings", Value: proto.Bool(true)},
		{Name: "basic.nack", Value: proto.Bool(true)},
		{Name: "consumer_cancel_notify", Value: proto.Bool(true)},
		{Name: "connection.blocked", Value: proto.Bool(true)},
		{Name: "authentication_failure_close", Value: proto.Bool(true)},
	}
	t := proto.Table{
		{Name: "product", Value: proto.String("Warren")},
		{Name: "version", Value: proto.String(Version)},
		{Name: "platform", Value: proto.String("Go")},
		{Name: "information", Value: proto.String("https://github.com/warren-amqp/warren")},
		{Name: "capabilities", Value: proto.TableValue(caps)},
	}
	if cfg.ConnectionName != "" {
		t.Set("connection_name", proto.String(cfg.ConnectionName))
	}
	for _, f := range cfg.ClientProperties {
		t.Set(f.Name, f.Value)
	}
	return t
}

// negotiate applies the spec's rule for tune values: zero on one side
// means "no limit", so the other side's value wins; otherwise the lower.
func negotiate[T uint16 | uint32](ours, theirs T) T {
	switch {
	case ours == 0:
		return theirs
	case theirs == 0:
		return ours
	}
	return min(ours, theirs)
}
