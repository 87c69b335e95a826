package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testcerts"
	"github.com/warren-amqp/warren/transport/tcp"
)

// pki is the set of certificates the tests use.
type pki struct {
	ca, otherCA *testcerts.CA
	server      tls.Certificate // issued by ca
	rogue       tls.Certificate // issued by otherCA, untrusted
	client      tls.Certificate // issued by ca, for client auth
}

func newPKI(t *testing.T) *pki {
	ca, other := testcerts.NewCA(t, "Warren Test CA"), testcerts.NewCA(t, "Someone Else's CA")
	return &pki{
		ca:      ca,
		otherCA: other,
		server:  ca.Issue(t, "localhost", x509.ExtKeyUsageServerAuth),
		rogue:   other.Issue(t, "localhost", x509.ExtKeyUsageServerAuth),
		client:  ca.Issue(t, "warren-client", x509.ExtKeyUsageClientAuth),
	}
}

// server is a TLS echo server on 127.0.0.1. It records the client
// certificate subjects it verified and the SNI names it saw.
type server struct {
	addr string

	mu      sync.Mutex
	clients []string
	sni     []string
}

func startServer(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	s := &server{}
	cfg = cfg.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.mu.Lock()
		s.sni = append(s.sni, hello.ServerName)
		s.mu.Unlock()
		return nil, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			conns = append(conns, c)
			s.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.HandshakeContext(context.Background()); err != nil {
					return
				}
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					s.mu.Lock()
					s.clients = append(s.clients, pc[0].Subject.CommonName)
					s.mu.Unlock()
				}
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *server) seenClients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.clients...)
}

func (s *server) seenSNI() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...)
}

func (s *server) port() string {
	_, port, _ := net.SplitHostPort(s.addr)
	return port
}

// echo writes and reads back a few bytes, returning the first error.
func echo(conn net.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "AMQP\x00\x00\x09\x01" {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestHandshakeTrustedCA(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &tls.Config{Certificates: []tls.Certificate{p.server}})

	cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost"}
	d := &Dialer{Addr: s.addr, Config: cfg}
	for range 2 { // redial with the same Dialer
		conn, err := d.Dial(t.Context())
		require.NoError(t, err)
		require.IsType(t, (*tls.Conn)(nil), conn)
		st := conn.(*tls.Conn).ConnectionState()
		require.True(t, st.HandshakeComplete)
		require.Equal(t, "localhost", st.ServerName)
		require.NoError(t, echo(conn))
		require.NoError(t, conn.Close())
	}
	require.Equal(t, []string{"localhost", "localhost"}, s.seenSNI())
}

// Without Config.ServerName the host of Addr is verified: here an IP
// address, checked against the certificate's IP SAN (and not sent as SNI).
func TestServerNameFromAddr(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &tls.Config{Certificates: []tls.Certificate{p.server}})

	cfg := &tls.Config{RootCAs: p.ca.Pool()}
	conn, err := (&Dialer{Addr: s.addr, Config: cfg}).Dial(t.Context())
	require.NoError(t, err)
	require.NoError(t, echo(conn))
	require.NoError(t, conn.Close())
	require.Empty(t, cfg.ServerName, "the caller's config is not modified")

	// A host name in Addr, with Base dialing the loopback IP.
	d := &Dialer{
		Addr:   net.JoinHostPort("localhost", s.port()),
		Base:   &tcp.Dialer{Addr: s.addr},
		Config: cfg,
	}
	conn, err = d.Dial(t.Context())
	require.NoError(t, err)
	require.Equal(t, "localhost", conn.(*tls.Conn).ConnectionState().ServerName)
	require.NoError(t, conn.Close())

	// Addr taken from a *tcp.Dialer Base.
	conn, err = (&Dialer{Base: &tcp.Dialer{Addr: s.addr}, Config: cfg}).Dial(t.Context())
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	require.Equal(t, []string{"", "localhost", ""}, s.seenSNI())
}

func TestHandshakeUntrusted(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &tls.Config{Certificates: []tls.Certificate{p.rogue}})

	_, err := (&Dialer{Addr: s.addr, Config: &tls.Config{RootCAs: p.ca.Pool()}}).Dial(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), s.addr)
	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, err, &verr)
	var uerr x509.UnknownAuthorityError
	require.ErrorAs(t, err, &uerr)

	// A nil Config means the system roots, which do not hold our CA either.
	_, err = (&Dialer{Addr: s.addr}).Dial(t.Context())
	require.ErrorAs(t, err, &verr)
}

func TestHandshakeWrongName(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &tls.Config{Certificates: []tls.Certificate{p.server}})

	_, err := (&Dialer{
		Addr:   s.addr,
		Config: &tls.Config{RootCAs: p.ca.Pool(), ServerName: "rabbit.example.com"},
	}).Dial(t.Context())
	var herr x509.HostnameError
	require.ErrorAs(t, err, &herr)
}

// Verification is off only when the caller's own Config says so.
func TestInsecureSkipVerifyOnlyFromConfig(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &tls.Config{Certificates: []tls.Certificate{p.rogue}})

	conn, err := (&Dialer{Addr: s.addr, Config: &tls.Config{InsecureSkipVerify: true}}).Dial(t.Context())
	require.NoError(t, err)
	require.NoError(t, echo(conn))
	require.NoError(t, conn.Close())
}

func TestClientCertificate(t *testing.T) {
	p := newPKI(t)
	for _, maxVersion := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(maxVersion), func(t *testing.T) {
			s := startServer(t, &tls.Config{
				Certificates: []tls.Certificate{p.server},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    p.ca.Pool(),
				MaxVersion:   maxVersion,
			})

			// With a certificate: accepted, and the server sees who we are.
			conn, err := (&Dialer{Addr: s.addr, Config: &tls.Config{
				RootCAs:      p.ca.Pool(),
				Certificates: []tls.Certificate{p.client},
			}}).Dial(t.Context())
			require.NoError(t, err)
			require.NoError(t, echo(conn))
			require.NoError(t, conn.Close())
			require.Equal(t, []string{"warren-client"}, s.seenClients())

			// Without: refused. TLS 1.2 fails the handshake; TLS 1.3
			// finishes the client's side first, so the refusal arrives on
			// the first read.
			conn, err = (&Dialer{Addr: s.addr, Config: &tls.Config{RootCAs: p.ca.Pool()}}).Dial(t.Context())
			if maxVersion == tls.VersionTLS12 {
				require.Error(t, err)
				require.Contains(t, err.Error(), s.addr)
				return
			}
			if err == nil {
				err = echo(conn)
				conn.Close()
			}
			require.Error(t, err)
			require.Equal(t, []string{"warren-client"}, s.seenClients())
		})
	}
}

func TestConfigFromFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, p.ca.PEM(), 0o600))
	certFile, keyFile := testcerts.WritePEM(t, dir, "client", p.client)

	s := startServer(t, &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.Pool(),
	})

	cfg, err := ConfigFromFiles(caFile, certFile, keyFile, "localhost", true)
	require.NoError(t, err)
	require.False(t, cfg.InsecureSkipVerify)
	require.Equal(t, "localhost", cfg.ServerName)
	require.Len(t, cfg.Certificates, 1)
	require.EqualValues(t, tls.VersionTLS12, cfg.MinVersion)

	conn, err := (&Dialer{Addr: s.addr, Config: cfg}).Dial(t.Context())
	require.NoError(t, err)
	require.NoError(t, echo(conn))
	require.NoError(t, conn.Close())
	require.Equal(t, []string{"warren-client"}, s.seenClients())
	require.Equal(t, []string{"localhost"}, s.seenSNI())

	// Certificate and key in one file.
	both := filepath.Join(dir, "both.pem")
	c, err := os.ReadFile(certFile)
	require.NoError(t, err)
	k, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(both, append(c, k...), 0o600))
	cfg, err = ConfigFromFiles(caFile, both, "", "", true)
	require.NoError(t, err)
	require.Len(t, cfg.Certificates, 1)
	require.Empty(t, cfg.ServerName)

	// verify=false: the only way this package's helpers turn verification off.
	cfg, err = ConfigFromFiles("", "", "", "", false)
	require.NoError(t, err)
	require.True(t, cfg.InsecureSkipVerify)
	require.Nil(t, cfg.RootCAs)
	require.Empty(t, cfg.Certificates)
}

func TestConfigFromFilesErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	certFile, keyFile := testcerts.WritePEM(t, dir, "client", p.client)
	junk := filepath.Join(dir, "junk.pem")
	require.NoError(t, os.WriteFile(junk, []byte("not PEM"), 0o600))
	missing := filepath.Join(dir, "missing.pem")

	_, err := ConfigFromFiles(missing, "", "", "", true)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = ConfigFromFiles(junk, "", "", "", true)
	require.ErrorContains(t, err, junk)
	_, err = ConfigFromFiles("", "", keyFile, "", true)
	require.Error(t, err)
	_, err = ConfigFromFiles("", certFile, junk, "", true)
	require.ErrorContains(t, err, junk)
	_, err = ConfigFromFiles("", certFile, "", "", true) // no key in certFile
	require.Error(t, err)
}

// silentServer accepts TCP connections and never says a word.
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

func TestHandshakeContext(t *testing.T) {
	addr := silentServer(t)
	d := &Dialer{Addr: addr, Config: &tls.Config{ServerName: "localhost"}}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := d.Dial(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), addr)
	require.Less(t, time.Since(start), 5*time.Second)

	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = d.Dial(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestHandshakeTimeout(t *testing.T) {
	addr := silentServer(t)
	d := &Dialer{Addr: addr, HandshakeTimeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := d.Dial(t.Context())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestDialErrors(t *testing.T) {
	// Nothing to dial.
	_, err := (&Dialer{}).Dial(t.Context())
	require.Error(t, err)

	// A Base with no address and no server name: refused before dialing.
	dialed := false
	base := stream(func(context.Context) (net.Conn, error) { dialed = true; return nil, errors.New("unreachable") })
	_, err = (&Dialer{Base: base}).Dial(t.Context())
	require.ErrorContains(t, err, "server name")
	require.False(t, dialed)

	// The Base's error comes through unchanged.
	_, err = (&Dialer{Addr: "127.0.0.1:1", Base: base}).Dial(t.Context())
	require.ErrorContains(t, err, "unreachable")

	// A cancelled context fails at the TCP dial.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = (&Dialer{Addr: "127.0.0.1:1"}).Dial(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

type stream func(context.Context) (net.Conn, error)

func (f stream) Dial(ctx context.Context) (net.Conn, error) { return f(ctx) }
