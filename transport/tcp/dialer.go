package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"golang.org/x/net/proxy"
)

// DefaultTimeout bounds a Dial when [Dialer.Timeout] is zero.
const DefaultTimeout = 30 * time.Second

// DefaultKeepAlive is the TCP keep-alive period used when
// [Dialer.KeepAlive] is zero. It matches the Go standard library's default.
const DefaultKeepAlive = 15 * time.Second

// Dialer dials TCP connections to one address. The zero value is not
// usable: Addr is required. A Dialer may be used for any number of Dials,
// concurrently, as long as its fields are not changed meanwhile.
type Dialer struct {
	// Addr is the "host:port" to connect to, as for [net.Dial]. An IPv6
	// host goes in brackets: "[::1]:5672".
	Addr string

	// Timeout bounds the whole Dial: name resolution, the TCP handshake
	// and, with a proxy, the proxy handshake. Zero means [DefaultTimeout];
	// negative means no limit other than the context's.
	Timeout time.Duration

	// KeepAlive is the TCP keep-alive period. Zero means
	// [DefaultKeepAlive]; negative disables keep-alive. It does not apply
	// to connections made by a custom [Dialer.Proxy].
	KeepAlive time.Duration

	// LocalAddr, if set, is the local address to dial from. It does not
	// apply to connections made by a custom [Dialer.Proxy].
	LocalAddr *net.TCPAddr

	// ProxyURL, if set, is a SOCKS5 proxy to connect through:
	// "socks5://[user:password@]host[:port]" (port 1080 by default;
	// "socks5h" is accepted as a synonym). The connection to the proxy is
	// made with this Dialer's KeepAlive and LocalAddr.
	ProxyURL string

	// Proxy, if set, makes the connection instead, for example a dialer
	// from [golang.org/x/net/proxy.SOCKS5] or an HTTP CONNECT proxy of
	// your own. At most one of ProxyURL and Proxy may be set.
	Proxy proxy.ContextDialer
}

// Dial connects to d.Addr and returns the connection, with TCP_NODELAY and
// keep-alive set. Without a proxy the result is a [*net.TCPConn]. ctx
// bounds the dial only: once Dial returns, cancelling ctx does not affect
// the connection. A ctx that is already done fails at once.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	if d.Addr == "" {
		return nil, errors.New("tcp: dial: no address")
	}
	if _, _, err := net.SplitHostPort(d.Addr); err != nil {
		return nil, fmt.Errorf("tcp: dial %s: %w", d.Addr, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tcp: dial %s: %w", d.Addr, err)
	}

	timeout := d.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	keepAlive := d.KeepAlive
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	direct := &directDialer{d: net.Dialer{KeepAlive: keepAlive}}
	if d.LocalAddr != nil {
		direct.d.LocalAddr = d.LocalAddr
	}

	via, name, err := d.proxyDialer(direct)
	if err != nil {
		return nil, fmt.Errorf("tcp: dial %s: %w", d.Addr, err)
	}
	if via == nil {
		conn, err := direct.DialContext(ctx, "tcp", d.Addr)
		if err != nil {
			err = withContext(ctx, err)
			if op := (*net.OpError)(nil); errors.As(err, &op) {
				return nil, err // "dial tcp ADDR: …" says it all
			}
			return nil, fmt.Errorf("tcp: dial %s: %w", d.Addr, err)
		}
		return conn, nil
	}
	conn, err := via.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: dial %s via proxy %s: %w", d.Addr, name, withContext(ctx, err))
	}
	if err := setNoDelay(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tcp: dial %s via proxy %s: %w", d.Addr, name, err)
	}
	return conn, nil
}

// String returns the address, for logs.
func (d *Dialer) String() string {
	if d.ProxyURL != "" {
		return d.Addr + " via " + redact(d.ProxyURL)
	}
	return d.Addr
}

// proxyDialer returns the proxy to dial through and a printable name for
// it, or nil when dialing directly.
func (d *Dialer) proxyDialer(direct *directDialer) (proxy.ContextDialer, string, error) {
	switch {
	case d.Proxy != nil && d.ProxyURL != "":
		return nil, "", errors.New("both Proxy and ProxyURL are set")
	case d.Proxy != nil:
		return d.Proxy, fmt.Sprintf("%T", d.Proxy), nil
	case d.ProxyURL == "":
		return nil, "", nil
	}
	u, err := url.Parse(d.ProxyURL)
	if err != nil {
		// url.Parse errors quote the input, password included.
		return nil, "", errors.New("invalid proxy URL")
	}
	name := u.Redacted()
	if u.Scheme != "socks5" && u.Scheme != "socks5h" {
		return nil, "", fmt.Errorf("proxy %s: unsupported scheme %q (want socks5)", name, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("proxy %s: no host", name)
	}
	p, err := proxy.FromURL(u, direct)
	if err != nil {
		return nil, "", fmt.Errorf("proxy %s: %w", name, err)
	}
	cd, ok := p.(proxy.ContextDialer)
	if !ok {
		return nil, "", fmt.Errorf("proxy %s: %T cannot dial with a context", name, p)
	}
	return cd, name, nil
}

// withContext makes sure a dial that failed because ctx ended says so to
// errors.Is: the SOCKS client, for one, turns ctx's deadline into a socket
// deadline and reports the socket's i/o timeout, possibly a moment before
// ctx itself notices it has expired.
func withContext(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil {
		var ne net.Error
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.As(err, &ne) && ne.Timeout() {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid proxy URL)"
	}
	return u.Redacted()
}

// directDialer dials TCP and sets TCP_NODELAY. It is both the direct path
// and the forward dialer a SOCKS5 proxy is reached through.
type directDialer struct {
	d net.Dialer
}

var _ proxy.ContextDialer = (*directDialer)(nil)
var _ proxy.Dialer = (*directDialer)(nil)

func (dd *directDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := dd.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := setNoDelay(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (dd *directDialer) Dial(network, addr string) (net.Conn, error) {
	return dd.DialContext(context.Background(), network, addr)
}

// setNoDelay turns Nagle's algorithm off where it can reach the socket. Go
// already does so for every TCP connection; this states the requirement
// instead of relying on a default.
func setNoDelay(conn net.Conn) error {
	if tc, ok := conn.(*net.TCPConn); ok {
		return tc.SetNoDelay(true)
	}
	return nil
}
