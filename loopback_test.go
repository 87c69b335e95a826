package warren

// End-to-end tests of the driver's I/O paths over real loopback TCP with
// a scripted broker (the deterministic tests of each path are in
// internal/driver), and against RabbitMQ.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/frames"
)

// tcpScripted runs serve as a scripted broker on a real loopback TCP
// connection and returns the client's end.
func tcpScripted(t testing.TB, serve func(b *scriptedBroker)) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		server, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer server.Close()
		serve(newScripted(t, server))
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	return nc
}

// openScripted opens a Connection over nc and a channel on it (in
// confirm mode when confirm is set); both close when the test ends.
func openScripted(t *testing.T, nc net.Conn, confirm bool) (context.Context, *Connection, *Channel) {
	t.Helper()
	return openScriptedWith(t, nc, confirm, Config{})
}

// openScriptedWith is openScripted with a Config.
func openScriptedWith(t testing.TB, nc net.Conn, confirm bool, cfg Config) (context.Context, *Connection, *Channel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	conn, err := Open(ctx, nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	ch, err := conn.Channel(ctx)
	require.NoError(t, err)
	if confirm {
		require.NoError(t, ch.ConfirmSelect(ctx))
	}
	return ctx, conn, ch
}

// publishSeqs reads publishes (method, header, body frames) until n have
// arrived, acking each when ack is set, and returns the 8-byte sequence
// numbers their bodies start with, in arrival order.
func (b *scriptedBroker) publishSeqs(n int, ack bool) ([]uint64, error) {
	var seqs []uint64
	var body []byte
	var want uint64
	for len(seqs) < n {
		f, err := b.readFrame()
		if err != nil {
			return seqs, err
		}
		switch f.Type {
		case frames.FrameHeader:
			var h frames.ContentHeader
			if err := h.Parse(f.Channel, f.Payload); err != nil {
				return seqs, err
			}
			want, body = h.BodySize, body[:0]
		case frames.FrameBody:
			body = append(body, f.Payload...)
			if uint64(len(body)) == want {
				seqs = append(seqs, binary.BigEndian.Uint64(body))
				if ack {
					b.send(1, &frames.BasicAck{DeliveryTag: uint64(len(seqs))})
				}
			}
		}
	}
	return seqs, nil
}

func seqBody(seq uint64, size int) []byte {
	body := make([]byte, size)
	binary.BigEndian.PutUint64(body, seq)
	return body
}

// Over real loopback TCP, end to end: a lone publish far larger than the
// socket buffers (written in part by the publishing goroutine, the rest
// carried over to the writer; see internal/driver's write tests), then
// more behind it: everything arrives intact and in order.
func TestLoopbackPartialWriteCarriedOver(t *testing.T) {
	const (
		size = 1 << 20
		n    = 6
	)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	got := make(chan []uint64, 1)
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if tc, ok := b.conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(16 << 10)
		}
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		<-release // not reading: the client's socket buffer fills up
		seqs, _ := b.publishSeqs(n, true)
		got <- seqs
		_, _, _ = b.readMethod()
	})
	require.NoError(t, nc.(*net.TCPConn).SetWriteBuffer(16<<10))
	ctx, _, ch := openScripted(t, nc, true)
	defer releaseAll() // before the connection closes, should the test fail early
	cfs := make([]*Confirmation, n)
	var err error
	cfs[0], err = ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(0, size)})
	require.NoError(t, err)
	// Queued behind the carried bytes (and waiting for write-buffer room
	// once the broker reads again).
	releaseAll()
	for i := 1; i < n; i++ {
		cfs[i], err = ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(uint64(i), size)})
		require.NoError(t, err)
	}
	for _, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
	}
	require.Equal(t, []uint64{0, 1, 2, 3, 4, 5}, <-got)
}

// countingConn wraps a TCP connection and counts what goes through its
// Write: the kind of wrapper direct writes must not bypass.
type countingConn struct {
	*net.TCPConn
	mu      sync.Mutex
	written int
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	c.mu.Lock()
	c.written += n
	c.mu.Unlock()
	return n, err
}

// A wrapper's Write sees every byte even though it embeds a *net.TCPConn
// (the driver writes around net.Conn only on the standard library's own
// sockets).
func TestWrapperSeesEveryByte(t *testing.T) {
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		_, _ = b.publishSeqs(10, true)
		_, _, _ = b.readMethod()
	})
	cc := &countingConn{TCPConn: nc.(*net.TCPConn)}
	ctx, _, ch := openScripted(t, cc, true)
	cc.mu.Lock()
	before := cc.written
	cc.mu.Unlock()
	for i := range 10 {
		cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(uint64(i), 64)})
		require.NoError(t, err)
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	require.Greater(t, cc.written-before, 10*64, "every publish went through the wrapper's Write")
}

// Deliveries reach a consumer in order, also when its buffer is full and
// the reader waits for room in the middle of a batch.
func TestDeliveriesInOrderThroughAFullBuffer(t *testing.T) {
	const n = 2000
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(false) != nil {
			return
		}
		m, _, err := b.readMethod()
		if err != nil {
			return
		}
		tag := m.(*frames.BasicConsume).ConsumerTag
		out, _ := frames.AppendMethod(nil, 1, &frames.BasicConsumeOK{ConsumerTag: tag})
		for i := uint64(1); i <= n; i++ {
			out, _ = frames.AppendMessage(out, 1, &frames.BasicDeliver{ConsumerTag: tag, DeliveryTag: i, RoutingKey: "q"}, nil, seqBody(i, 16), 131072)
			if i%300 == 0 { // several reads' worth, some while the buffer is full
				_, _ = b.conn.Write(out)
				out = out[:0]
			}
		}
		_, _ = b.conn.Write(out)
		_, _, _ = b.readMethod() // until the client closes
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Open(ctx, nc, Config{ConsumerBuffer: 4})
	require.NoError(t, err)
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	require.NoError(t, err)
	cons, err := ch.Consume(ctx, "q", ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	for i := uint64(1); i <= n; i++ {
		if i%500 == 1 {
			time.Sleep(20 * time.Millisecond) // let the buffer fill
		}
		select {
		case d := <-cons.Deliveries():
			require.Equal(t, i, d.DeliveryTag)
			require.Equal(t, i, binary.BigEndian.Uint64(d.Body))
		case <-ctx.Done():
			t.Fatalf("delivery %d did not arrive", i)
		}
	}
}

// Against RabbitMQ, end to end: one-at-a-time publishes and RPCs (the
// driver lends the socket to the waiting goroutines, see
// internal/driver's lend tests), then several publishers at once, then a
// consumer on the same connection. Every publish is confirmed and every
// message consumed once.
func TestBrokerWaitersReadTheirReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	publish := func(ch *Channel, body string) error {
		_, err := confirmPublish(ctx, ch, "", q.Name, Publishing{Body: []byte(body)})
		return err
	}
	const alone = 200
	for i := range alone {
		require.NoError(t, publish(ch, fmt.Sprint("alone-", i)))
		if i%20 == 0 {
			_, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
			require.NoError(t, err)
		}
	}

	const publishers, each = 3, 200
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		pch, err := c.Channel(ctx)
		require.NoError(t, err)
		require.NoError(t, pch.ConfirmSelect(ctx))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := publish(pch, fmt.Sprint("p", p, "-", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	total := alone + publishers*each
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	seen := make(map[string]bool, total)
	for len(seen) < total {
		select {
		case d := <-cons.Deliveries():
			require.False(t, seen[string(d.Body)], "%s delivered twice", d.Body)
			seen[string(d.Body)] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d messages consumed", len(seen), total)
		}
	}
}
