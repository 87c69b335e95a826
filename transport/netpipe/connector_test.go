package netpipe

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConnectorScriptPerDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := errors.New("connection refused")
		c := &Connector{
			Fail: func(n int) error {
				if n == 1 {
					return refused
				}
				return nil
			},
			Serve: func(n int, server *Conn) {
				line, err := bufio.NewReader(server).ReadString('\n')
				if err != nil {
					return
				}
				_, _ = io.WriteString(server, "dial "+string(rune('0'+n))+": "+line)
			},
		}
		defer c.Wait()

		_, err := c.Dial(t.Context())
		require.ErrorIs(t, err, refused)

		for want := 2; want <= 3; want++ {
			conn, err := c.Dial(t.Context())
			require.NoError(t, err)
			_, err = io.WriteString(conn, "hello\n")
			require.NoError(t, err)
			got, err := io.ReadAll(conn) // the server end closes when Serve returns
			require.NoError(t, err)
			require.Equal(t, "dial "+string(rune('0'+want))+": hello\n", string(got))
			require.NoError(t, conn.Close())
		}
		require.Equal(t, 3, c.Dials())
	})
}

func TestConnectorCancelledContext(t *testing.T) {
	c := &Connector{Serve: func(int, *Conn) { t.Error("Serve called") }}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Dial(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, c.Dials())
	c.Wait()
}

func TestConnectorNoServe(t *testing.T) {
	_, err := new(Connector).Dial(t.Context())
	require.Error(t, err)
}

// A scripted server that goes silent: the client's read deadline fires on
// the bubble's clock.
func TestConnectorSilentServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &Connector{Serve: func(_ int, server *Conn) {
			_, _ = io.Copy(io.Discard, server) // read everything, say nothing
		}}
		defer c.Wait()
		conn, err := c.Dial(t.Context())
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, err = conn.Read(make([]byte, 1))
		requireTimeout(t, err)
	})
}

func TestListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewListener(Options{ServerAddr: "broker:5672"})
		require.Equal(t, "broker:5672", l.Addr().String())
		require.Equal(t, Network, l.Addr().Network())

		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				conn, err := l.Accept()
				if err != nil {
					assert.ErrorIs(t, err, net.ErrClosed)
					return
				}
				_, _ = io.Copy(conn, conn)
				_ = conn.Close()
			}
		}()

		conn, err := l.Dial(t.Context())
		require.NoError(t, err)
		require.Equal(t, "broker:5672", conn.RemoteAddr().String())
		_, err = io.WriteString(conn, "echo")
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		require.NoError(t, err)
		require.Equal(t, "echo", string(buf))
		require.NoError(t, conn.Close())

		require.NoError(t, l.Close())
		require.NoError(t, l.Close())
		<-done
		_, err = l.Dial(t.Context())
		require.ErrorIs(t, err, net.ErrClosed)
	})
}

// Nobody accepts: the dial waits until its context is done.
func TestListenerDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewListener(Options{})
		defer l.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		_, err := l.Dial(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 3*time.Second, time.Since(start))
	})
}
