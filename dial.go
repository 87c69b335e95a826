package warren

import (
	"context"
	cryptotls "crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/warren-amqp/warren/proto"

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
	// Shuffle makes DialAny, and every recovery, try the URIs in a
	// random order (spreading clients over a cluster's nodes) rather than
	// as given.
	Shuffle bool
}

// Dial connects to the broker at uri (amqp:// or amqps://, see ParseURI)
// and opens a Connection. The context bounds connecting and the
// handshake; the URI's connection_timeout bounds them too. The
// connection recovers from losses (see Recovery).
//
//	conn, err := warren.Dial(ctx, "amqp://guest:guest@localhost:5672/")
func Dial(ctx context.Context, uri string) (*Connection, error) {
	return DialWith(ctx, uri, DialOptions{})
}

// DialWith is Dial with options.
func DialWith(ctx context.Context, uri string, opts DialOptions) (*Connection, error) {
	return DialAny(ctx, []string{uri}, opts)
}

// DialAny connects to the first of several brokers that answers (the
// nodes of a cluster, say): the URIs are tried in order, or shuffled
// with DialOptions.Shuffle, each attempt bounded by its URI's
// connection_timeout. A broker that refuses the credentials (403) fails
// the dial at once; other failures move on to the next URI. Every
// recovery walks the list again, so a connection fails over to another
// node when its own goes away.
func DialAny(ctx context.Context, uris []string, opts DialOptions) (*Connection, error) {
	if len(uris) == 0 {
		return nil, errors.New("amqp: DialAny: no URI given")
	}
	eps := make([]endpoint, len(uris))
	for i, uri := range uris {
		ep, err := endpointFor(uri, opts)
		if err != nil {
			return nil, err
		}
		eps[i] = ep
	}
	return connect(ctx, opts.Config, eps, opts.Shuffle)
}

// endpoint is one broker address a Connection may dial. It keeps only
// what its URI sets (the rest of the configuration is the Connection's):
// an idle connection's footprint counts every byte.
type endpoint struct {
	connector Connector
	rawURI    string        // as given (the caller's string, not a copy); empty for Connect
	timeout   time.Duration // bounds one attempt; 0: Recovery.AttemptTimeout
	uri       uriSettings
}

// name is the endpoint's URI with the password redacted, for errors,
// logs and events (made when asked for: an idle connection keeps only the
// caller's string).
func (ep *endpoint) name() string {
	if ep.rawURI == "" {
		return ""
	}
	u, err := ParseURI(ep.rawURI)
	if err != nil { // parsed once already: cannot happen
		return "(unparsable URI)"
	}
	return u.Redacted()
}

// uriSettings are the Config fields an endpoint's URI decides.
type uriSettings struct {
	vhost      string
	heartbeat  time.Duration
	channelMax uint16
	frameMax   uint32
	auth       []Authenticator
}

// settingsOf returns cfg's URI-decided fields.
func settingsOf(cfg Config) uriSettings {
	return uriSettings{vhost: cfg.Vhost, heartbeat: cfg.Heartbeat, channelMax: cfg.ChannelMax, frameMax: cfg.FrameMax, auth: cfg.Auth}
}

// config is base with the endpoint's URI settings.
func (ep *endpoint) config(base Config) Config {
	s := ep.uri
	base.Vhost, base.Heartbeat, base.ChannelMax, base.FrameMax, base.Auth = s.vhost, s.heartbeat, s.channelMax, s.frameMax, s.auth
	return base
}

// endpointFor parses uri into an endpoint.
func endpointFor(uri string, opts DialOptions) (endpoint, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return endpoint{}, err
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
				return endpoint{}, fmt.Errorf("amqp: TLS configuration for %s: %w", u.Redacted(), err)
			}
		}
		conn = &tls.Dialer{Addr: u.Addr(), Base: conn, Config: tc}
	}
	return endpoint{connector: conn, rawURI: uri, timeout: u.ConnectionTimeout, uri: settingsOf(cfg)}, nil
}

// connect opens a Connection to the first endpoint that answers.
func connect(ctx context.Context, base Config, eps []endpoint, shuffle bool) (*Connection, error) {
	var errs []error
	for _, i := range addressOrder(len(eps), shuffle, rand.Perm) {
		c, err := eps[i].open(ctx, base, eps)
		if err == nil {
			c.shuffle = shuffle
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, proto.AccessRefused) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// open dials ep and opens a Connection over it, configured by base and
// ep's URI, that may recover through eps.
func (ep *endpoint) open(ctx context.Context, base Config, eps []endpoint) (*Connection, error) {
	if ep.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ep.timeout)
		defer cancel()
	}
	nc, err := ep.connector.Dial(ctx)
	if err == nil {
		var c *Connection
		if c, err = open(ctx, nc, ep.config(base), eps); err == nil {
			c.cur = ep // an element of eps, which c keeps
			return c, nil
		}
	}
	if name := ep.name(); name != "" {
		return nil, &connectError{name: name, err: err}
	}
	return nil, err
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
// The connection recovers from losses by dialling connector again (see
// Recovery).
func Connect(ctx context.Context, connector Connector, cfg Config) (*Connection, error) {
	// The endpoint keeps the defaults (guest's credentials when Auth is
	// empty): every recovery dials with them.
	return connect(ctx, cfg, []endpoint{{connector: connector, uri: settingsOf(withDefaults(cfg))}}, false)
}

// Connector returns the Connector the connection's current stream was
// dialled with (nil for one opened over a net.Conn with Open).
func (c *Connection) Connector() Connector {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.cur.connector
}

// Address returns the address (credentials redacted) of the broker the
// connection is, or was last, connected to; empty for Connect and Open.
func (c *Connection) Address() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.name()
}

// connectError is a failed attempt to connect to one address. Its text
// has one "amqp: " prefix, however the cause's reads.
type connectError struct {
	name string // the address, credentials redacted
	err  error
}

func (e *connectError) Error() string {
	return "amqp: connecting to " + e.name + ": " + strings.TrimPrefix(e.err.Error(), "amqp: ")
}

func (e *connectError) Unwrap() error { return e.err }
