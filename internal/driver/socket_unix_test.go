//go:build unix

package driver

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
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

func rawOf(t *testing.T, nc net.Conn) *rawSocket {
	t.Helper()
	s, ok := newSocket(nc, &bufPool{}).(*rawSocket)
	require.True(t, ok, "%T is read through its descriptor", nc)
	return s
}

// Which sockets take the fast path: the standard library's TCP and Unix
// sockets (through the descriptor) and netpipe; never a type wrapping a
// socket, even one that embeds *net.TCPConn and so exposes SyscallConn:
// its Write may do more than write.
func TestSocketKinds(t *testing.T) {
	client, _ := tcpPair(t)
	rawOf(t, client)

	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	uc, err := net.Dial("unix", ln.Addr().String())
	require.NoError(t, err)
	defer uc.Close()
	rawOf(t, uc)

	wrapped := newSocket(struct{ *net.TCPConn }{client.(*net.TCPConn)}, &bufPool{})
	require.IsType(t, &plainSocket{}, wrapped)
	require.False(t, wrapped.fast())
}

// rawSocket.read behaves as the socket's own Read: it waits for data,
// reads what is there, honours read deadlines (the reader's kick) and
// reports io.EOF and a closed socket. Given no buffer, it takes one from
// the pool once data is there.
func TestRawSocketRead(t *testing.T) {
	t.Run("data into a pooled buffer", func(t *testing.T) {
		client, server := tcpPair(t)
		s := rawOf(t, client)
		go func() {
			time.Sleep(20 * time.Millisecond) // the read has to wait for it
			_, _ = server.Write([]byte("hello"))
		}()
		buf, n, err := s.read(nil)
		require.NoError(t, err)
		require.Len(t, buf, poolBufSize)
		require.Equal(t, "hello", string(buf[:n]))
	})
	t.Run("data into the caller's buffer", func(t *testing.T) {
		client, server := tcpPair(t)
		s := rawOf(t, client)
		_, _ = server.Write([]byte("hello"))
		mine := make([]byte, 64)
		buf, n, err := s.read(mine)
		require.NoError(t, err)
		require.Equal(t, &mine[0], &buf[0])
		require.Equal(t, "hello", string(buf[:n]))
	})
	t.Run("deadline", func(t *testing.T) {
		client, _ := tcpPair(t)
		s := rawOf(t, client)
		require.NoError(t, client.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		buf, _, err := s.read(nil)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Nil(t, buf, "no buffer held while nothing came")
		require.NoError(t, client.SetReadDeadline(time.Time{}))
	})
	t.Run("peer closes", func(t *testing.T) {
		client, server := tcpPair(t)
		s := rawOf(t, client)
		_, _ = server.Write([]byte("x"))
		require.NoError(t, server.Close())
		buf := make([]byte, 8)
		_, n, err := s.read(buf)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, _, err = s.read(buf)
		require.ErrorIs(t, err, io.EOF)
	})
	t.Run("closed locally while waiting", func(t *testing.T) {
		client, _ := tcpPair(t)
		s := rawOf(t, client)
		go func() {
			time.Sleep(20 * time.Millisecond)
			client.Close()
		}()
		_, _, err := s.read(nil)
		require.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("empty buffer", func(t *testing.T) {
		client, _ := tcpPair(t)
		_, n, err := rawOf(t, client).read([]byte{})
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// tryWrite never blocks: into a peer that does not read, it writes what
// fits and reports the rest as unwritten, not as an error.
func TestRawSocketTryWriteNeverBlocks(t *testing.T) {
	client, server := tcpPair(t)
	require.NoError(t, client.(*net.TCPConn).SetWriteBuffer(16<<10))
	require.NoError(t, server.(*net.TCPConn).SetReadBuffer(16<<10))
	s := rawOf(t, client)
	big := make([]byte, 8<<20)
	total := 0
	for range 10 {
		n, err := s.tryWrite(big)
		require.NoError(t, err)
		require.Less(t, n, len(big))
		total += n
	}
	require.Positive(t, total)
	n, err := s.tryWrite(big)
	require.NoError(t, err)
	require.Zero(t, n, "full: nothing more fits")
	server.Close()
	time.Sleep(20 * time.Millisecond)
	var errs error
	for range 3 { // the reset may take a write to surface
		if _, err := s.tryWrite([]byte("x")); err != nil {
			errs = err
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Error(t, errs, "a write to a closed peer fails")
	require.False(t, errors.Is(errs, io.EOF))
}
