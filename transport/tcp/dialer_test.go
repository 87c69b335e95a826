package tcp

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"
)

// echoServer accepts on 127.0.0.1 and echoes every connection until the
// test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func requireEcho(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := conn.Write([]byte("AMQP\x00\x00\x09\x01"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, "AMQP\x00\x00\x09\x01", string(buf))
}

func TestDialDirect(t *testing.T) {
	addr := echoServer(t)
	d := &Dialer{Addr: addr}
	for range 2 { // the same Dialer dials again, as a reconnect does
		conn, err := d.Dial(t.Context())
		require.NoError(t, err)
		require.IsType(t, (*net.TCPConn)(nil), conn)
		require.Equal(t, addr, conn.RemoteAddr().String())
		requireEcho(t, conn)
		require.NoError(t, conn.Close())
	}
	require.Equal(t, addr, d.String())
}

func TestDialOptions(t *testing.T) {
	addr := echoServer(t)
	d := &Dialer{
		Addr:      addr,
		Timeout:   -1,
		KeepAlive: -1,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
	}
	conn, err := d.Dial(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "127.0.0.1", conn.LocalAddr().(*net.TCPAddr).IP.String())
	requireEcho(t, conn)
}

func TestDialCancelledContext(t *testing.T) {
	addr := echoServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	_, err := (&Dialer{Addr: addr}).Dial(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), addr)
	require.Less(t, time.Since(start), time.Second)
}

func TestDialRefused(t *testing.T) {
	addr := closedAddr(t)
	_, err := (&Dialer{Addr: addr}).Dial(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "dial", oe.Op)
}

func TestDialBadAddress(t *testing.T) {
	_, err := (&Dialer{}).Dial(t.Context())
	require.Error(t, err)
	_, err = (&Dialer{Addr: "no-port"}).Dial(t.Context())
	require.ErrorContains(t, err, "no-port")
}

func TestDialSOCKS5(t *testing.T) {
	target := echoServer(t)
	s := startSOCKS(t, "", "")
	d := &Dialer{Addr: target, ProxyURL: "socks5://" + s.addr()}
	conn, err := d.Dial(t.Context())
	require.NoError(t, err)
	requireEcho(t, conn)
	require.NoError(t, conn.Close())
	require.Equal(t, []string{target}, s.seen())
}

func TestDialSOCKS5Hostname(t *testing.T) {
	target := echoServer(t)
	_, port, err := net.SplitHostPort(target)
	require.NoError(t, err)
	s := startSOCKS(t, "", "")
	// The name goes to the proxy unresolved; the proxy resolves it.
	d := &Dialer{Addr: net.JoinHostPort("localhost", port), ProxyURL: "socks5h://" + s.addr()}
	conn, err := d.Dial(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	requireEcho(t, conn)
	require.Equal(t, []string{net.JoinHostPort("localhost", port)}, s.seen())
}

func TestDialSOCKS5Auth(t *testing.T) {
	target := echoServer(t)
	s := startSOCKS(t, "guest", "s3cret")

	d := &Dialer{Addr: target, ProxyURL: "socks5://guest:s3cret@" + s.addr()}
	conn, err := d.Dial(t.Context())
	require.NoError(t, err)
	requireEcho(t, conn)
	require.NoError(t, conn.Close())
	require.NotContains(t, d.String(), "s3cret")

	bad := &Dialer{Addr: target, ProxyURL: "socks5://guest:wrong@" + s.addr()}
	_, err = bad.Dial(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), target)
	require.Contains(t, err.Error(), s.addr())
	require.NotContains(t, err.Error(), "wrong", "the password is redacted")
}

func TestDialSOCKS5TargetRefused(t *testing.T) {
	target := closedAddr(t)
	s := startSOCKS(t, "", "")
	_, err := (&Dialer{Addr: target, ProxyURL: "socks5://" + s.addr()}).Dial(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), target)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
}

func TestDialSOCKS5ProxyDown(t *testing.T) {
	proxyAddr := closedAddr(t)
	_, err := (&Dialer{Addr: "127.0.0.1:5672", ProxyURL: "socks5://" + proxyAddr}).Dial(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), proxyAddr)
}

func TestDialCustomProxy(t *testing.T) {
	target := echoServer(t)
	s := startSOCKS(t, "", "")
	p, err := proxy.SOCKS5("tcp", s.addr(), nil, proxy.Direct)
	require.NoError(t, err)
	d := &Dialer{Addr: target, Proxy: p.(proxy.ContextDialer)}
	conn, err := d.Dial(t.Context())
	require.NoError(t, err)
	requireEcho(t, conn)
	require.NoError(t, conn.Close())
	require.Equal(t, []string{target}, s.seen())
}

func TestDialProxyConfigErrors(t *testing.T) {
	for _, d := range []*Dialer{
		{Addr: "127.0.0.1:1", ProxyURL: "http://127.0.0.1:3128"},
		{Addr: "127.0.0.1:1", ProxyURL: "socks5://"},
		{Addr: "127.0.0.1:1", ProxyURL: "socks5://u:p@[bad"},
		{Addr: "127.0.0.1:1", ProxyURL: "socks5://127.0.0.1:1", Proxy: proxy.Direct},
	} {
		_, err := d.Dial(t.Context())
		require.Error(t, err, "%+v", d)
		require.Contains(t, err.Error(), "127.0.0.1:1")
	}
}

// silentServer accepts TCP connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A proxy that never answers the SOCKS greeting: the context's deadline,
// or a cancel, ends the dial promptly with the context's error.
func TestDialSOCKS5ContextDuringHandshake(t *testing.T) {
	proxyAddr := silentServer(t)
	d := &Dialer{Addr: "127.0.0.1:5672", ProxyURL: "socks5://" + proxyAddr}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Dial(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Contains(t, err.Error(), "127.0.0.1:5672")

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = d.Dial(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
}

// Dialer.Timeout bounds the whole dial, the proxy handshake included.
func TestDialTimeout(t *testing.T) {
	proxyAddr := silentServer(t)
	d := &Dialer{Addr: "127.0.0.1:5672", ProxyURL: "socks5://" + proxyAddr, Timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := d.Dial(t.Context())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())
	require.Less(t, time.Since(start), 5*time.Second)
}
