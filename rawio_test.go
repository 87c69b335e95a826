//go:build unix

package warren

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// rawConn.Read behaves as the socket's own Read: it waits for data, reads
// what is there, honours read deadlines (the reader's kick) and reports
// io.EOF and a closed socket.
func TestRawConnRead(t *testing.T) {
	t.Run("data", func(t *testing.T) {
		client, server := tcpPair(t)
		rc := newRawConn(client)
		require.NotNil(t, rc)
		go func() {
			time.Sleep(20 * time.Millisecond) // the read has to wait for it
			_, _ = server.Write([]byte("hello"))
		}()
		buf := make([]byte, 64)
		n, err := rc.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "hello", string(buf[:n]))
	})
	t.Run("deadline", func(t *testing.T) {
		client, _ := tcpPair(t)
		rc := newRawConn(client)
		require.NoError(t, client.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := rc.Read(make([]byte, 8))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		// Cleared, the connection reads again.
		require.NoError(t, client.SetReadDeadline(time.Time{}))
	})
	t.Run("peer closes", func(t *testing.T) {
		client, server := tcpPair(t)
		rc := newRawConn(client)
		_, _ = server.Write([]byte("x"))
		require.NoError(t, server.Close())
		buf := make([]byte, 8)
		n, err := rc.Read(buf)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, err = rc.Read(buf)
		require.ErrorIs(t, err, io.EOF)
	})
	t.Run("closed locally while waiting", func(t *testing.T) {
		client, _ := tcpPair(t)
		rc := newRawConn(client)
		go func() {
			time.Sleep(20 * time.Millisecond)
			client.Close()
		}()
		_, err := rc.Read(make([]byte, 8))
		require.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("empty buffer", func(t *testing.T) {
		client, _ := tcpPair(t)
		n, err := newRawConn(client).Read(nil)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// tryWrite never blocks: into a peer that does not read, it writes what
// fits and reports the rest as unwritten, not as an error.
func TestRawConnTryWriteNeverBlocks(t *testing.T) {
	client, server := tcpPair(t)
	require.NoError(t, client.(*net.TCPConn).SetWriteBuffer(16<<10))
	require.NoError(t, server.(*net.TCPConn).SetReadBuffer(16<<10))
	rc := newRawConn(client)
	big := make([]byte, 8<<20)
	total := 0
	for range 10 {
		n, err := rc.tryWrite(big)
		require.NoError(t, err)
		require.Less(t, n, len(big))
		total += n
	}
	require.Positive(t, total)
	n, err := rc.tryWrite(big)
	require.NoError(t, err)
	require.Zero(t, n, "full: nothing more fits")
	server.Close()
	time.Sleep(20 * time.Millisecond)
	var errs error
	for range 3 { // the reset may take a write to surface
		if _, err := rc.tryWrite([]byte("x")); err != nil {
			errs = err
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Error(t, errs, "a write to a closed peer fails")
	require.False(t, errors.Is(errs, io.EOF))
}
