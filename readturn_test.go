package warren

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

func (c *Connection) turnCounts() turnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.turns
}

func (c *Connection) owner() readOwner {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rowner
}

// setLendPeriod makes a lent socket stay unread for d unless something
// takes it back: with an hour, only the mechanisms under test can.
func (c *Connection) setLendPeriod(d time.Duration) {
	c.mu.Lock()
	c.lendPeriod = d
	c.mu.Unlock()
	c.ensureReader() // a reader parked on the old period wakes up and parks anew
}

// confirmOneAtATime publishes n messages on ch, waiting for each confirm,
// starting at sequence number first.
func confirmOneAtATime(ctx context.Context, t *testing.T, ch *Channel, first, n int) {
	t.Helper()
	for i := range n {
		publishConfirmed(t, ctx, ch, "", "q", Publishing{Body: seqBody(uint64(first+i), 64)})
	}
}

// lendSocket publishes one message at a time until the reader has lent
// the socket out, and returns how many it published. The peer must ack
// each publish.
func lendSocket(ctx context.Context, t *testing.T, conn *Connection, ch *Channel) int {
	t.Helper()
	for n := 1; n <= 100; n++ {
		confirmOneAtATime(ctx, t, ch, n-1, 1)
		if conn.owner() == ownNone {
			return n
		}
	}
	t.Fatal("the reader never lent the socket out")
	return 0
}

// serveConfirms answers channel.open, basic.qos and connection.close,
// and acks every publish as it completes, except the one whose body
// starts with sequence number hold: then it calls atHold, and acks it
// afterwards if atHold returns true, else returns (closing the socket).
func (b *scriptedBroker) serveConfirms(hold uint64, atHold func() bool) {
	var tag uint64
	for {
		f, err := b.readFrame()
		if err != nil {
			return
		}
		switch f.Type {
		case frames.FrameBody: // 64-byte bodies: one frame per publish
			tag++
			if binary.BigEndian.Uint64(f.Payload) == hold && !atHold() {
				return
			}
			b.send(1, &frames.BasicAck{DeliveryTag: tag})
		case frames.FrameMethod:
			m, err := frames.DecodeMethod(f.Channel, f.Payload)
			if err != nil {
				return
			}
			switch m.(type) {
			case *frames.ChannelOpen:
				b.send(f.Channel, &frames.ChannelOpenOK{})
			case *frames.BasicQos:
				b.send(f.Channel, &frames.BasicQosOK{})
			case *frames.ConnectionClose:
				b.send(0, &frames.ConnectionCloseOK{})
				return
			}
		}
	}
}

const noHold = ^uint64(0)

// One publish at a time and one RPC at a time: the waiting goroutines
// read their own answers, and no other goroutine is woken for them.
func TestReadTurnWaitersReadTheirAnswers(t *testing.T) {
	const n = 200
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		b.serveConfirms(noHold, nil)
	})
	ctx, conn, ch := openScripted(t, nc, true)

	confirmOneAtATime(ctx, t, ch, 0, n)
	st := conn.turnCounts()
	require.Positive(t, st.lent, "the reader lent the socket out")
	// The reader takes the socket back when the lend period passes while
	// nobody holds it: a few rounds go through it.
	require.GreaterOrEqual(t, st.waiterReads, n/2, "confirms read by the publisher itself")

	before := conn.turnCounts().waiterReads
	for range 50 {
		require.NoError(t, ch.Qos(ctx, QosOptions{PrefetchCount: 10}))
	}
	require.GreaterOrEqual(t, conn.turnCounts().waiterReads-before, 25, "qos-ok read by the caller itself")
}

// heldPublish opens a confirm-mode channel on a scripted broker (proposing
// heartbeat seconds), has the reader lend the socket out, and publishes
// sequence number 1000, which the broker holds: it calls atHold and acks
// only if that returns true.
func heldPublish(t *testing.T, heartbeat uint16, atHold func(b *scriptedBroker) bool) (context.Context, *Connection, *Channel, *Confirmation) {
	t.Helper()
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(heartbeat) != nil || b.answerChannel(true) != nil {
			return
		}
		b.serveConfirms(1000, func() bool { return atHold(b) })
	})
	ctx, conn, ch := openScripted(t, nc, true)
	conn.setLendPeriod(time.Hour)
	lendSocket(ctx, t, conn, ch)
	cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(1000, 64)})
	require.NoError(t, err)
	return ctx, conn, ch, cf
}

// A reading waiter's context ends: Wait returns at once with the
// context's error, the confirm that comes later still resolves the
// handle, and the connection goes on.
func TestReadTurnWaiterContextEnds(t *testing.T) {
	release := make(chan struct{})
	ctx, conn, ch, cf := heldPublish(t, 0, func(*scriptedBroker) bool { <-release; return true })
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := cf.Wait(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second, "the read was interrupted")
	require.Positive(t, conn.turnCounts().waiterReads, "the waiter was reading")

	close(release)
	select {
	case <-cf.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the late confirm was not read")
	}
	acked, err := cf.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
	confirmOneAtATime(ctx, t, ch, 2000, 20)

	// A cancelled context, not a deadline, interrupts the read too.
	require.Eventually(t, func() bool { return conn.owner() == ownNone }, 10*time.Second, time.Millisecond)
	held, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(3000, 64)})
	require.NoError(t, err)
	// This one is acked at once; cancelling while the wait runs must
	// not break anything either way.
	cctx, ccancel := context.WithCancel(ctx)
	go func() { time.Sleep(time.Millisecond); ccancel() }()
	if _, err := held.Wait(cctx); err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	acked, err = held.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
}

// Deliveries that a reading waiter reads are handed to the reader
// goroutine with the socket, and reach the consumer in order.
func TestReadTurnDeliveriesGoToTheReader(t *testing.T) {
	const deliveries = 50
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		var tag, held uint64
		for {
			f, err := b.readFrame()
			if err != nil {
				return
			}
			if f.Type == frames.FrameBody { // 64-byte bodies: one frame per publish
				tag++
				if f.Payload[7] == 0xff {
					held = tag
				} else {
					b.send(1, &frames.BasicAck{DeliveryTag: tag})
				}
				continue
			}
			if f.Type != frames.FrameMethod {
				continue
			}
			m, err := frames.DecodeMethod(f.Channel, f.Payload)
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *frames.BasicConsume:
				// consume-ok, the deliveries, then the held publish's ack,
				// all in one write: one read by the waiter sees them all.
				out, _ := frames.AppendMethod(nil, 1, &frames.BasicConsumeOK{ConsumerTag: m.ConsumerTag})
				for i := uint64(1); i <= deliveries; i++ {
					out, _ = frames.AppendMessage(out, 1, &frames.BasicDeliver{ConsumerTag: m.ConsumerTag, DeliveryTag: i, RoutingKey: "q"}, nil, []byte{byte(i)}, 131072)
				}
				out, _ = frames.AppendMethod(out, 1, &frames.BasicAck{DeliveryTag: held})
				_, _ = b.conn.Write(out)
			case *frames.ConnectionClose:
				b.send(0, &frames.ConnectionCloseOK{})
				return
			}
		}
	})
	// A small buffer: the reader also waits for the consumer to catch up.
	ctx, conn, ch := openScriptedWith(t, nc, true, Config{ConsumerBuffer: 4})
	conn.setLendPeriod(time.Hour)
	n := lendSocket(ctx, t, conn, ch)

	// The peer holds a publish whose last body byte is 0xff.
	body := seqBody(uint64(n), 64)
	body[7] = 0xff
	cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: body})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	var acked bool
	var waitErr error
	go func() { defer wg.Done(); acked, waitErr = cf.Wait(ctx) }()
	require.Eventually(t, func() bool { return conn.owner() == ownWaiter }, 10*time.Second, time.Millisecond)

	cons, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "c", NoAck: true})
	require.NoError(t, err)
	for i := 1; i <= deliveries; i++ {
		select {
		case d := <-cons.Deliveries():
			require.Equal(t, uint64(i), d.DeliveryTag, "deliveries in order")
			require.Equal(t, []byte{byte(i)}, d.Body)
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d did not arrive", i)
		}
	}
	wg.Wait()
	require.NoError(t, waitErr)
	require.True(t, acked)
	require.Positive(t, conn.turnCounts().handoffs, "the waiter handed the deliveries over")
	require.Equal(t, ownReader, conn.owner(), "a connection with a consumer is not lent")
}

// Whatever may block on the broker outside a Wait takes a lent socket
// back at once: a Confirmation's Done channel, opening a channel, and
// Close.
func TestReadTurnSocketTakenBack(t *testing.T) {
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		b.serveConfirms(noHold, nil)
	})
	ctx, conn, ch := openScripted(t, nc, true)
	conn.setLendPeriod(time.Hour)
	n := lendSocket(ctx, t, conn, ch)

	cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: seqBody(uint64(n), 64)})
	require.NoError(t, err)
	select {
	case <-cf.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a confirm awaited through Done was not read")
	}

	n += lendSocket(ctx, t, conn, ch)
	opened := make(chan error, 1)
	go func() {
		_, err := conn.Channel(ctx)
		opened <- err
	}()
	select {
	case err := <-opened:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("channel.open-ok was not read")
	}

	_ = lendSocket(ctx, t, conn, ch)
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, conn.Close(closeCtx), "close-ok was read")
	require.NoError(t, conn.Err())
}

// A broker's connection.close that arrives while the socket is lent out
// and nobody waits is read within the lend period.
func TestReadTurnBrokerCloseWhileLent(t *testing.T) {
	closeNow := make(chan struct{})
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(true) != nil {
			return
		}
		go func() {
			<-closeNow
			b.send(0, &frames.ConnectionClose{ReplyCode: uint16(proto.ConnectionForced), ReplyText: "shutdown"})
		}()
		b.serveConfirms(noHold, nil)
	})
	ctx, conn, ch := openScripted(t, nc, true)
	lendSocket(ctx, t, conn, ch)
	close(closeNow)
	select {
	case <-conn.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the broker's close was not read")
	}
	var ce *ConnectionError
	require.ErrorAs(t, conn.Err(), &ce)
	require.Equal(t, proto.ConnectionForced, ce.Code)
}

// The peer goes away while a waiter reads: the waiter learns the publish's
// fate is unknown, and the connection shuts down.
func TestReadTurnPeerGoneWhileWaiterReads(t *testing.T) {
	gone := make(chan struct{})
	ctx, conn, _, cf := heldPublish(t, 0, func(*scriptedBroker) bool { <-gone; return false })
	result := make(chan error, 1)
	go func() { _, err := cf.Wait(ctx); result <- err }()
	require.Eventually(t, func() bool { return conn.owner() == ownWaiter }, 10*time.Second, time.Millisecond)
	close(gone)
	select {
	case err := <-result:
		require.ErrorIs(t, err, ErrMaybeSent)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not learn of the lost connection")
	}
	select {
	case <-conn.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not shut down")
	}
	require.Error(t, conn.Err())
}

// A broker that goes silent while a waiter reads is declared dead by the
// heartbeat clock, and the waiter returns.
func TestReadTurnSilentPeerWhileWaiterReads(t *testing.T) {
	ctx, conn, _, cf := heldPublish(t, 1, func(b *scriptedBroker) bool {
		for { // silent from now on, but reading
			if _, err := b.readFrame(); err != nil {
				return false
			}
		}
	})
	start := time.Now()
	_, err := cf.Wait(ctx)
	require.ErrorIs(t, err, ErrMaybeSent)
	require.Less(t, time.Since(start), 20*time.Second)
	<-conn.Done()
	require.ErrorIs(t, conn.Err(), ErrHeartbeatTimeout)
}

// Against RabbitMQ: one-at-a-time publishes and RPCs read their own
// replies; then several publishers at once, then a consumer on the same
// connection. Every publish is confirmed and every message consumed once.
func TestBrokerWaitersReadTheirReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(ctx))
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
	st := c.turnCounts()
	require.Positive(t, st.lent)
	require.GreaterOrEqual(t, st.waiterReads, alone/2, "replies read by the waiting goroutine")

	const publishers, each = 3, 200
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		pch, err := c.Channel(ctx)
		require.NoError(t, err)
		require.NoError(t, pch.Confirm(ctx))
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
	require.Equal(t, ownReader, c.owner(), "a connection with a consumer is not lent")
}
