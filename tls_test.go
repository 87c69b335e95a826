package warren

import (
	"context"
	cryptotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testcerts"
	"github.com/warren-amqp/warren/internal/testenv"
)

// tlsFrontend terminates TLS in front of the broker's plain port, as a
// load balancer would, so the client does a real TLS handshake.
// What the client sends through it is copied to sent, when not nil.
func tlsFrontend(t *testing.T, cert cryptotls.Certificate, sent io.Writer) string {
	t.Helper()
	ln, err := cryptotls.Listen("tcp", "127.0.0.1:0", &cryptotls.Config{Certificates: []cryptotls.Certificate{cert}, MinVersion: cryptotls.VersionTLS12})
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			front, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer front.Close()
				back, err := net.Dial("tcp", brokerAddr())
				if err != nil {
					return
				}
				defer back.Close()
				done := make(chan struct{})
				var dst io.Writer = back
				if sent != nil {
					dst = io.MultiWriter(back, sent)
				}
				go func() { _, _ = io.Copy(dst, front); back.(*net.TCPConn).CloseWrite(); close(done) }()
				_, _ = io.Copy(front, back)
				front.Close()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

func TestBrokerTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "warren test CA")
	sent := &testenv.Buffer{}
	addr := tlsFrontend(t, ca.Issue(t, "localhost", x509.ExtKeyUsageServerAuth), sent)
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("trusted", func(t *testing.T) {
		c, err := DialWith(ctx, "amqps://guest:guest@localhost:"+port+"/", DialOptions{TLSConfig: &cryptotls.Config{RootCAs: ca.Pool()}})
		require.NoError(t, err)
		tc, ok := c.NetConn().(*cryptotls.Conn)
		require.True(t, ok, "the connection runs over TLS")
		require.True(t, tc.ConnectionState().HandshakeComplete)
		ch, err := c.Channel(ctx)
		require.NoError(t, err)
		_, err = ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)

		// A clean close over TLS: connection.close (class 10, method 50,
		// reply code 200) reaches the broker, which answers close-ok.
		require.NoError(t, c.Close(ctx))
		require.NoError(t, c.Err())
		require.Contains(t, string(sent.Bytes()), "\x00\x0a\x00\x32\x00\xc8", "connection.close was sent")
	})

	t.Run("CA file from the URI", func(t *testing.T) {
		dir := t.TempDir()
		caFile := dir + "/ca.pem"
		require.NoError(t, os.WriteFile(caFile, ca.PEM(), 0o600))
		uri := fmt.Sprintf("amqps://guest:guest@localhost:%s/?cacertfile=%s", port, url.QueryEscape(caFile))
		c, err := Dial(ctx, uri)
		require.NoError(t, err)
		require.NoError(t, c.Close(ctx))
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		other := testcerts.NewCA(t, "someone else")
		_, err := DialWith(ctx, "amqps://guest:guest@localhost:"+port+"/", DialOptions{TLSConfig: &cryptotls.Config{RootCAs: other.Pool()}})
		require.Error(t, err)
		var unknown x509.UnknownAuthorityError
		require.True(t, errors.As(err, &unknown), "want an unknown-authority error, got %v", err)
		require.NotContains(t, err.Error(), "guest:guest")
	})
}
