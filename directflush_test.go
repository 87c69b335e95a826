package warren

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/frames"
)

// tcpScripted runs serve as a scripted broker on a real loopback TCP
// connection (direct flushes need a socket with a file descriptor, which
// netpipe does not have) and returns the client's end.
func tcpScripted(t *testing.T, serve func(b *scriptedBroker)) net.Conn {
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
func openScriptedWith(t *testing.T, nc net.Conn, confirm bool, cfg Config) (context.Context, *Connection, *Channel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	conn, err := Open(ctx, nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	ch, err := conn.Channel(ctx)
	require.NoError(t, err)
	if confirm {
		require.NoError(t, ch.Confirm(ctx))
	}
	return ctx, conn, ch
}

// waitWriterIdle waits until the writer goroutine has nothing in hand and
// no wake-up pending. Direct writes fall back to the writer while it is
// busy, and under -race on a loaded machine a writer that lags behind can
// stay busy from one request to the next: tests start from a quiet state.
func waitWriterIdle(t *testing.T, c *Connection) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.wbusy && len(c.carry) == 0 && c.m.OutboundLen() == 0 && len(c.writeWake) == 0
	}, 10*time.Second, time.Millisecond)
}

func (c *Connection) flushCounts() flushStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushes
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

// One publish at a time, each waited for: the publishing goroutine writes
// its own message instead of waking the writer goroutine.
func TestDirectFlushOneAtATime(t *testing.T) {
	const n = 200
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		_, _ = b.publishSeqs(n, true)
		_, _, _ = b.readMethod() // until the client closes
	})
	ctx, conn, ch := openScripted(t, nc, true)
	require.NotNil(t, conn.raw, "a TCP connection allows non-blocking writes")
	waitWriterIdle(t, conn)

	before := conn.flushCounts()
	for i := range n {
		cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(uint64(i), 64)})
		require.NoError(t, err)
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
	}
	direct := conn.flushCounts().direct - before.direct
	// A stray wake-up may let the writer take a message now and then.
	require.GreaterOrEqual(t, direct, n*9/10, "publishes written by the caller")
}

// A stream of publishes is still coalesced by the writer: only a publish
// with nothing else awaiting a confirm is written directly.
func TestDirectFlushStreamStaysCoalesced(t *testing.T) {
	const n = 1000
	got := make(chan []uint64, 1)
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		seqs, _ := b.publishSeqs(n, false)
		b.send(1, &frames.BasicAck{DeliveryTag: n, Multiple: true})
		got <- seqs
		_, _, _ = b.readMethod()
	})
	ctx, conn, ch := openScripted(t, nc, true)

	before := conn.flushCounts()
	cfs := make([]*Confirmation, n)
	var err error
	for i := range cfs {
		cfs[i], err = ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(uint64(i), 64)})
		require.NoError(t, err)
	}
	for _, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
	}
	require.LessOrEqual(t, conn.flushCounts().direct-before.direct, 1, "only the first publish had nothing outstanding")
	seqs := <-got
	for i, s := range seqs {
		require.Equal(t, uint64(i), s, "publishes arrive in order")
	}
}

// The socket takes only part of a direct write: the rest is carried over
// to the writer goroutine, and everything arrives intact and in order,
// including publishes queued behind the carried bytes.
func TestDirectFlushPartialWriteCarriedOver(t *testing.T) {
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
	ctx, conn, ch := openScripted(t, nc, true)
	defer releaseAll() // before the connection closes, should the test fail early
	waitWriterIdle(t, conn)

	before := conn.flushCounts()
	cfs := make([]*Confirmation, n)
	var err error
	cfs[0], err = ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(0, size)})
	require.NoError(t, err)
	after := conn.flushCounts()
	require.Equal(t, before.direct+1, after.direct, "the lone publish was written directly")
	require.Equal(t, before.partial+1, after.partial, "and the socket took only part of it")
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

// Acks are written by the goroutine that makes them when it is about to
// wait: a Handler's by the reader after its batch, a channel consumer's
// when its buffer is empty. Neither wakes the writer.
func TestDirectFlushConsumerAcks(t *testing.T) {
	for _, handler := range []bool{true, false} {
		t.Run(map[bool]string{true: "handler", false: "channel"}[handler], func(t *testing.T) {
			testDirectFlushConsumerAcks(t, handler)
		})
	}
}

func testDirectFlushConsumerAcks(t *testing.T, handler bool) {
	const n = 50
	start := make(chan struct{})
	acks := make(chan uint64, 1)
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(false) != nil {
			return
		}
		for consuming := false; !consuming; { // basic.qos (the default prefetch), then basic.consume
			m, _, err := b.readMethod()
			if err != nil {
				return
			}
			switch m.(type) {
			case *frames.BasicQos:
				b.send(1, &frames.BasicQosOK{})
			case *frames.BasicConsume:
				b.send(1, &frames.BasicConsumeOK{ConsumerTag: "c"})
				consuming = true
			}
		}
		<-start
		// One delivery at a time, each sent once the previous one is acked:
		// every ack is made by a consumer that has caught up.
		var out []byte
		var last uint64
		for i := uint64(1); i <= n; i++ {
			out, _ = frames.AppendMessage(out[:0], 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: i, RoutingKey: "q"}, nil, []byte("x"), 131072)
			_, _ = b.conn.Write(out)
			for last < i {
				m, _, err := b.readMethod()
				if err != nil {
					return
				}
				if a, ok := m.(*frames.BasicAck); ok {
					last = a.DeliveryTag
				}
			}
		}
		acks <- last
		_, _, _ = b.readMethod()
	})
	ctx, conn, ch := openScripted(t, nc, false)
	opts := ConsumeOptions{ConsumerTag: "c"}
	if handler {
		opts.Handler = func(d Delivery) { require.NoError(t, d.Ack(false)) }
	}
	cons, err := ch.Consume(ctx, "q", opts)
	require.NoError(t, err)
	waitWriterIdle(t, conn)
	before := conn.flushCounts()
	close(start)
	if !handler {
		for range n {
			d := <-cons.Deliveries()
			require.NoError(t, d.Ack(false))
		}
	}
	select {
	case last := <-acks:
		require.Equal(t, uint64(n), last)
	case <-ctx.Done():
		t.Fatal("acks never arrived")
	}
	require.GreaterOrEqual(t, conn.flushCounts().direct-before.direct, n*9/10, "acks written without the writer")
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

// Direct writes are made only on the standard library's own sockets: a
// wrapper's Write sees every byte even though it embeds a *net.TCPConn.
func TestDirectFlushNotAroundWrappers(t *testing.T) {
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		_, _ = b.publishSeqs(10, true)
		_, _, _ = b.readMethod()
	})
	require.NotNil(t, newRawConn(nc), "the socket itself")
	cc := &countingConn{TCPConn: nc.(*net.TCPConn)}
	require.Nil(t, newRawConn(cc), "a wrapper around it")
	ctx, conn, ch := openScripted(t, cc, true)
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
	require.Zero(t, conn.flushCounts().direct)
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
