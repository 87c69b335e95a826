package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/warren-amqp/warren/transport/tcp"
)

// DefaultHandshakeTimeout bounds the TLS handshake when
// [Dialer.HandshakeTimeout] is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// StreamDialer makes the byte stream TLS runs over. [*tcp.Dialer] is one;
// so is any Warren transport.
type StreamDialer interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// Dialer dials TLS connections. It can be used for any number of Dials,
// concurrently, as long as its fields (and Config) are not changed
// meanwhile.
type Dialer struct {
	// Addr is the server's "host:port". Its host is the default server
	// name, and when Base is nil Addr is dialed with a [tcp.Dialer] of
	// default settings. If Addr is empty and Base is a [*tcp.Dialer], the
	// Base's Addr is used.
	Addr string

	// Base makes the underlying connection. Nil means
	// &tcp.Dialer{Addr: Addr}.
	Base StreamDialer

	// Config is the TLS client configuration; nil means defaults (system
	// roots, full verification). It is cloned for every dial, never
	// modified.
	Config *tls.Config

	// HandshakeTimeout bounds the TLS handshake (not the dial of the
	// underlying connection). Zero means [DefaultHandshakeTimeout];
	// negative means no limit other than the context's.
	HandshakeTimeout time.Duration
}

// Dial makes the underlying connection, performs the TLS client handshake
// under ctx, and returns the [*crypto/tls.Conn] as a [net.Conn] (type-assert
// it for ConnectionState). On failure the underlying connection is closed.
// ctx bounds the dial only; cancelling it later does not affect the
// connection.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	addr := d.Addr
	base := d.Base
	if addr == "" {
		if td, ok := base.(*tcp.Dialer); ok {
			addr = td.Addr
		}
	}
	if base == nil {
		if addr == "" {
			return nil, errors.New("tls: dial: no address")
		}
		base = &tcp.Dialer{Addr: addr}
	}

	cfg := d.Config.Clone()
	if cfg == nil {
		cfg = new(tls.Config)
	}
	if cfg.ServerName == "" && addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("tls: dial %s: %w", addr, err)
		}
		cfg.ServerName = host
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		return nil, errors.New("tls: dial: no server name to verify: set Addr or Config.ServerName")
	}

	raw, err := base.Dial(ctx)
	if err != nil {
		return nil, err // transports name the address already
	}

	if timeout := d.handshakeTimeout(); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if addr == "" {
			addr = raw.RemoteAddr().String()
		}
		return nil, fmt.Errorf("tls: handshake with %s: %w", addr, err)
	}
	return conn, nil
}

func (d *Dialer) handshakeTimeout() time.Duration {
	if d.HandshakeTimeout == 0 {
		return DefaultHandshakeTimeout
	}
	return d.HandshakeTimeout
}
