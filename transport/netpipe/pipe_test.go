package netpipe

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

func TestNettestConn(t *testing.T) {
	// nettest's round trips write 13 bytes to an echoing peer before
	// reading, so the buffer must hold at least that much (as any socket
	// buffer does).
	for _, size := range []int{0, 64} {
		t.Run(map[int]string{0: "default", 64: "64B"}[size], func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				client, server := PipeWith(Options{BufferSize: size})
				return client, server, func() {
					client.Close()
					server.Close()
				}, nil
			})
		})
	}
}

func requireTimeout(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "Timeout() on %v", err)
}

func TestBuffersWrites(t *testing.T) {
	client, server := PipeWith(Options{BufferSize: 8})
	defer client.Close()
	defer server.Close()

	// Both sides write first: fine while it fits, unlike net.Pipe.
	n, err := client.Write([]byte("ping"))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	n, err = server.Write([]byte("pong"))
	require.NoError(t, err)
	require.Equal(t, 4, n)

	buf := make([]byte, 16)
	n, err = server.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
	n, err = client.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf[:n]))
}

func TestAddrs(t *testing.T) {
	client, server := PipeWith(Options{ClientAddr: "c:1", ServerAddr: "s:2"})
	defer client.Close()
	defer server.Close()
	require.Equal(t, "c:1", client.LocalAddr().String())
	require.Equal(t, "s:2", client.RemoteAddr().String())
	require.Equal(t, "s:2", server.LocalAddr().String())
	require.Equal(t, "c:1", server.RemoteAddr().String())
	require.Equal(t, Network, client.LocalAddr().Network())

	c, s := Pipe()
	defer c.Close()
	defer s.Close()
	require.Equal(t, Addr("client"), c.LocalAddr())
	require.Equal(t, Addr("server"), c.RemoteAddr())
}

func TestCloseSemantics(t *testing.T) {
	client, server := Pipe()
	_, err := client.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, client.Close())

	// Own calls fail with net.ErrClosed.
	_, err = client.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = client.Read(make([]byte, 1))
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, client.SetDeadline(time.Now()), net.ErrClosed)
	require.ErrorIs(t, client.Close(), net.ErrClosed)

	// The peer drains, then sees EOF; its writes fail.
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	require.Equal(t, "last words", string(got))
	n, err := server.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err) // bare io.EOF, as io.Reader requires
	_, err = server.Write([]byte("x"))
	require.ErrorIs(t, err, io.ErrClosedPipe)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "write", oe.Op)
	require.NoError(t, server.Close())
}

func TestCloseWrite(t *testing.T) {
	client, server := Pipe()
	defer client.Close()
	defer server.Close()

	_, err := client.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite())
	_, err = client.Write([]byte("x"))
	require.ErrorIs(t, err, io.ErrClosedPipe)

	got, err := io.ReadAll(server)
	require.NoError(t, err)
	require.Equal(t, "request", string(got))

	// The other direction still works.
	_, err = server.Write([]byte("reply"))
	require.NoError(t, err)
	require.NoError(t, server.CloseWrite())
	got, err = io.ReadAll(client)
	require.NoError(t, err)
	require.Equal(t, "reply", string(got))
}

func TestPeerCloseUnblocksWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := PipeWith(Options{BufferSize: 4})
		defer client.Close()

		var n int
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			n, err = client.Write([]byte("0123456789"))
		}()
		synctest.Wait() // the writer is durably blocked on the full buffer
		require.NoError(t, server.Close())
		<-done
		require.Equal(t, 4, n)
		require.ErrorIs(t, err, io.ErrClosedPipe)
	})
}

func TestCloseUnblocksOwnCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := PipeWith(Options{BufferSize: 1})
		defer server.Close()

		var wg sync.WaitGroup
		var rerr, werr error
		wg.Go(func() { _, rerr = client.Read(make([]byte, 1)) })
		wg.Go(func() { _, werr = client.Write([]byte("ab")) })
		synctest.Wait()
		require.NoError(t, client.Close())
		wg.Wait()
		require.ErrorIs(t, rerr, net.ErrClosed)
		require.ErrorIs(t, werr, net.ErrClosed)
	})
}

// A write blocked on a full buffer times out at its deadline, and the bubble's
// clock (not the wall clock) gets it there.
func TestSynctestWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := PipeWith(Options{BufferSize: 16})
		defer client.Close()
		defer server.Close()

		start := time.Now()
		require.NoError(t, client.SetWriteDeadline(start.Add(5*time.Second)))
		payload := bytes.Repeat([]byte("x"), 40)
		n, err := client.Write(payload)
		requireTimeout(t, err)
		require.Equal(t, 16, n, "the bytes that fit were queued")
		require.Equal(t, 5*time.Second, time.Since(start))

		// Still expired: fails at once, with nothing written.
		n, err = client.Write([]byte("y"))
		requireTimeout(t, err)
		require.Zero(t, n)

		// Reads are unaffected by the write deadline.
		_, err = server.Write([]byte("ok"))
		require.NoError(t, err)
		buf := make([]byte, 2)
		_, err = io.ReadFull(client, buf)
		require.NoError(t, err)

		// Clearing the deadline lets the rest through once the peer reads.
		require.NoError(t, client.SetWriteDeadline(time.Time{}))
		go func() {
			_, _ = io.CopyN(io.Discard, server, 40)
		}()
		n, err = client.Write(payload[16:])
		require.NoError(t, err)
		require.Equal(t, 24, n)
	})
}

func TestSynctestReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := Pipe()
		defer client.Close()
		defer server.Close()

		start := time.Now()
		require.NoError(t, client.SetReadDeadline(start.Add(5*time.Second)))
		n, err := client.Read(make([]byte, 8))
		requireTimeout(t, err)
		require.Zero(t, n)
		require.Equal(t, 5*time.Second, time.Since(start))

		// An expired deadline fails a Read even with bytes queued, as for
		// a socket; moving it into the future lets the Read through.
		_, err = server.Write([]byte("data"))
		require.NoError(t, err)
		_, err = client.Read(make([]byte, 8))
		requireTimeout(t, err)
		require.NoError(t, client.SetReadDeadline(time.Now().Add(time.Second)))
		buf := make([]byte, 8)
		n, err = client.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "data", string(buf[:n]))
	})
}

// Moving a deadline while a Read waits: the later deadline wins, and the
// earlier timer, which has been stopped, does not fire.
func TestSynctestDeadlineExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := Pipe()
		defer client.Close()
		defer server.Close()

		start := time.Now()
		require.NoError(t, client.SetReadDeadline(start.Add(time.Second)))
		done := make(chan error)
		go func() {
			_, err := client.Read(make([]byte, 1))
			done <- err
		}()
		synctest.Wait()
		require.NoError(t, client.SetReadDeadline(start.Add(10*time.Second)))
		requireTimeout(t, <-done)
		require.Equal(t, 10*time.Second, time.Since(start))
	})
}

// A peer that stops reading stalls the writer (back-pressure); the writer
// resumes when the peer reads again.
func TestSynctestBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := PipeWith(Options{BufferSize: 10})
		defer client.Close()
		defer server.Close()

		var n int
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			n, err = client.Write([]byte("abcdefghijklmnopqrstuvwxyz"))
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Write returned with the buffer full")
		default:
		}

		// An hour of fake time passes; with no deadline the writer waits.
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Write returned with the buffer full")
		default:
		}

		buf := make([]byte, 26)
		_, rerr := io.ReadFull(server, buf)
		require.NoError(t, rerr)
		<-done
		require.NoError(t, err)
		require.Equal(t, 26, n)
		require.Equal(t, "abcdefghijklmnopqrstuvwxyz", string(buf))
	})
}

// Concurrent Writes are serialized: each one's bytes arrive contiguously.
func TestWritesDoNotInterleave(t *testing.T) {
	client, server := PipeWith(Options{BufferSize: 7})
	defer client.Close()

	const writers, size = 8, 1000
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, err := client.Write(bytes.Repeat([]byte{byte('a' + i)}, size))
			assert.NoError(t, err)
		})
	}
	got := make([]byte, writers*size)
	_, err := io.ReadFull(server, got)
	require.NoError(t, err)
	wg.Wait()
	require.NoError(t, server.Close())
	for i := 0; i < len(got); i += size {
		require.Equal(t, bytes.Repeat(got[i:i+1], size), got[i:i+size], "chunk at %d", i)
	}
}

func TestZeroLength(t *testing.T) {
	client, server := Pipe()
	defer client.Close()
	defer server.Close()
	n, err := client.Write(nil)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = server.Read(nil)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestLargeTransfer(t *testing.T) {
	client, server := PipeWith(Options{BufferSize: 333})
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(want)
		if err == nil {
			err = client.Close()
		}
		errc <- err
	}()
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(want, got))
	require.NoError(t, server.Close())
}

func TestErrorsAreOpErrors(t *testing.T) {
	client, server := Pipe()
	defer server.Close()
	require.NoError(t, client.SetReadDeadline(time.Unix(1, 0)))
	_, err := client.Read(make([]byte, 1))
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))
	require.Equal(t, "read", oe.Op)
	require.Equal(t, Network, oe.Net)
	require.Equal(t, Addr("client"), oe.Source)
	require.Equal(t, Addr("server"), oe.Addr)
	require.NoError(t, client.Close())
}

// TryWrite takes what fits and never blocks: a full buffer, or another
// Write in progress, gives 0 and no error; a closed end gives the error
// Write would.
func TestTryWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := PipeWith(Options{BufferSize: 10})
		defer server.Close()

		n, err := client.TryWrite([]byte("abcdef"))
		require.NoError(t, err)
		require.Equal(t, 6, n)
		n, err = client.TryWrite([]byte("ghijklmn"))
		require.NoError(t, err)
		require.Equal(t, 4, n, "only what fits")
		n, err = client.TryWrite([]byte("x"))
		require.NoError(t, err)
		require.Zero(t, n, "a full buffer is not an error")

		// A blocked Write holds the write side: TryWrite must not slip
		// bytes in between its chunks.
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = client.Write([]byte("0123456789"))
		}()
		synctest.Wait()
		buf := make([]byte, 5)
		_, err = io.ReadFull(server, buf)
		require.NoError(t, err)
		n, err = client.TryWrite([]byte("zz"))
		require.NoError(t, err)
		require.Zero(t, n, "a Write is in progress")
		rest := make([]byte, 15)
		_, err = io.ReadFull(server, rest)
		require.NoError(t, err)
		<-done
		require.Equal(t, "abcdefghij0123456789", string(buf)+string(rest))

		require.NoError(t, server.Close())
		_, err = client.TryWrite([]byte("late"))
		require.ErrorIs(t, err, io.ErrClosedPipe)
		require.NoError(t, client.Close())
		_, err = client.TryWrite([]byte("late"))
		require.ErrorIs(t, err, net.ErrClosed)
	})
}
