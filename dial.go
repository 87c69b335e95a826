package warren

import (
	"context"
	cryptotls "crypto/tls"
	"fmt"
	"net"

	"github.com/warren-amqp/warren/transport/tcp"
	"github.com/warren-amqp/warren/transport/tls"
)

// Connector makes a fresh byte stream to the broker each time Dial is
// called: *tcp.Dialer, *tls.Dialer and netpipe's connectors are
// Connectors. Keeping a Connector rather than a single net.Conn lets a
// client dial again.
type Connector interface {
	Dial(ctx context.Context) (net.Conn, error)
}

// DialOptions are what Dial cannot say in a URI.
type DialOptions struct {
	// Config is the connection configuration; fields the URI sets (vhost,
	// heartbeat, channel_max, frame_max, credentials and mechanisms)
	// override it.
	Config Config
	// TLSConfig is used for amqps:// URIs instead of one built from the
	// URI's cacertfile, certfile, keyfile, server_name_indication and
	// verify parameters.
	TLSConfig *cryptotls.Config
	// ProxyURL routes the TCP connection through a SOCKS5 proxy
	// ("socks5://user:password@host:port").
	ProxyURL string
}

// Dial connects to the broker at uri (amqp:// or amqps://, see ParseURI)
// and opens a Connection. The context bounds connecting and the
// handshake; the URI's connection_timeout bounds them too.
//
//	conn, err := warren.Dial(ctx, "amqp://guest:guest@localhost:5672/")
func Dial(ctx context.Context, uri string) (*Connection, error) {
	return DialWith(ctx, uri, DialOptions{})
}

// DialWith is Dial with options.
func DialWith(ctx context.Context, uri string, opts DialOptions) (*Connection, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	cfg := opts.Config
	if cfg.Vhost == "" {
		cfg.Vhost = u.Vhost
	}
	if u.HasHeartbeat {
		cfg.Heartbeat = u.Heartbeat
		if u.Heartbeat == 0 {
			cfg.Heartbeat = -1 // heartbeat=0 asks for none
		}
	}
	if u.ChannelMax != 0 {
		cfg.ChannelMax = u.ChannelMax
	}
	if u.FrameMax != 0 {
		cfg.FrameMax = u.FrameMax
	}
	if len(cfg.Auth) == 0 || len(u.AuthMechanism) > 0 {
		cfg.Auth = authFromURI(u)
	}
	var conn Connector = &tcp.Dialer{Addr: u.Addr(), Timeout: u.ConnectionTimeout, ProxyURL: opts.ProxyURL}
	if u.TLS() {
		tc := opts.TLSConfig
		if tc == nil {
			if tc, err = tls.ConfigFromFiles(u.CACertFile, u.CertFile, u.KeyFile, u.ServerName, u.Verify != "verify_none"); err != nil {
				return nil, fmt.Errorf("amqp: TLS configuration for %s: %w", u.Redacted(), err)
			}
		}
		conn = &tls.Dialer{Addr: u.Addr(), Base: conn, Config: tc}
	}
	if u.ConnectionTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.ConnectionTimeout)
		defer cancel()
	}
	c, err := Connect(ctx, conn, cfg)
	if err != nil {
		return nil, fmt.Errorf("amqp: connecting to %s: %w", u.Redacted(), err)
	}
	return c, nil
}

// authFromURI returns the mechanisms the URI asks for, with its
// credentials; by default PLAIN, then AMQPLAIN.
func authFromURI(u URI) []Authenticator {
	names := u.AuthMechanism
	if len(names) == 0 {
		names = []string{"PLAIN", "AMQPLAIN"}
	}
	var auth []Authenticator
	for _, n := range names {
		switch n {
		case "PLAIN":
			auth = append(auth, PlainAuth{Username: u.Username, Password: u.Password})
		case "AMQPLAIN":
			auth = append(auth, AMQPlainAuth{Username: u.Username, Password: u.Password})
		case "EXTERNAL":
			auth = append(auth, ExternalAuth{})
		}
	}
	return auth
}

// Connect dials with connector and opens a Connection over the stream.
func Connect(ctx context.Context, connector Connector, cfg Config) (*Connection, error) {
	nc, err := connector.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c, err := Open(ctx, nc, cfg)
	if err != nil {
		return nil, err
	}
	c.connector = connector
	return c, nil
}

// Connector returns the Connector the connection was dialled with (nil
// for one opened over a net.Conn with Open).
func (c *Connection) Connector() Connector { return c.connector }
