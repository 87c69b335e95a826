package warren

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
)

// Acking a delivery from an incarnation of the channel that has since
// closed fails without sending anything: its tag would name another
// message. The message itself goes back to the queue.
func TestBrokerStaleDeliveryAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("once")}))
	var d Delivery
	require.Eventually(t, func() bool {
		var ok bool
		d, ok, err = ch.Get(ctx, q.Name, false)
		return err == nil && ok
	}, 5*time.Second, 20*time.Millisecond)

	_, err = ch.QueueDeclare(ctx, q.Name+".missing", QueueOptions{Passive: true})
	require.ErrorIs(t, err, NotFound)
	require.ErrorIs(t, d.Ack(false), ErrStaleDelivery)

	again, ok, err := ch.Get(ctx, q.Name, false)
	require.NoError(t, err)
	require.True(t, ok, "the unacked message was requeued when its channel closed")
	require.True(t, again.Redelivered)
	require.Greater(t, again.DeliveryTag, d.DeliveryTag, "delivery tags keep increasing on the Channel")
	require.ErrorIs(t, ch.Ack(ctx, d.DeliveryTag, false), ErrStaleDelivery, "Channel.Ack refuses the old tag too")
	require.NoError(t, again.Ack(false))

	// A multiple ack with a tag of this incarnation acknowledges its
	// deliveries up to it: were the old numbering sent, the broker would
	// close the channel (unknown delivery tag) or ack the wrong messages.
	for i := 0; i < 3; i++ {
		require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("m")}))
	}
	var tags []uint64
	require.Eventually(t, func() bool {
		d, ok, err := ch.Get(ctx, q.Name, false)
		if err == nil && ok {
			tags = append(tags, d.DeliveryTag)
		}
		return len(tags) == 3
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, ch.Ack(ctx, tags[2], true))
	st, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
	require.NoError(t, err, "the multiple ack was valid on the wire")
	require.Equal(t, 0, st.Messages)
	require.NoError(t, ch.Err())
	require.Equal(t, uint64(2), ch.Incarnation())
	require.NoError(t, ch.Close(ctx))
	_, err = ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, ch.Ack(ctx, tags[2], false), ErrClosed)
}

// The reopened channel re-applies confirm mode and QoS, so publishes after
// a channel error are still confirmed.
func TestBrokerReopenedChannelKeepsModes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	require.NoError(t, ch.Qos(ctx, QosOptions{PrefetchCount: 3}))

	_, err = ch.QueueDeclare(ctx, q.Name+".missing", QueueOptions{Passive: true})
	require.ErrorIs(t, err, NotFound)

	cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Body: []byte("after the error")})
	require.NoError(t, err)
	require.Equal(t, uint64(1), cf.Seq, "a new incarnation numbers publishes from 1")
	acked, err := cf.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
	require.Equal(t, uint64(2), ch.Incarnation())

	// QoS is back too: with prefetch 3, a consumer holds at most 3 unacked.
	for i := 0; i < 9; i++ {
		require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("m")}))
	}
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(cons.Deliveries()) == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return len(cons.Deliveries()) > 3 }, 300*time.Millisecond, 20*time.Millisecond,
		"prefetch 3 must hold the rest back")
}

// Connection and Channel are safe for concurrent use: many goroutines
// publish with confirms on one channel while others declare on another.
func TestBrokerConcurrentUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	pub, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := pub.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, pub.ConfirmSelect(ctx))
	other, err := c.Channel(ctx)
	require.NoError(t, err)

	const workers, each = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := 0; w < workers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := confirmPublish(ctx, pub, "", q.Name, Publishing{Body: []byte(fmt.Sprint(w, i))}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := other.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true}); err != nil {
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
	got, err := other.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
	require.NoError(t, err)
	require.Equal(t, workers*each, got.Messages)
}

// A confirm listener that does not receive, and a close listener nobody
// reads, never stall the reader: deliveries and confirmations keep
// flowing, and the held notices all arrive once the listener receives.
func TestBrokerSlowListenersDoNotStallReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	c.NotifyClose(make(chan error)) // unbuffered and never read
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	notices := ch.NotifyConfirm(make(chan ConfirmNotice)) // not received until the end
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Body: []byte("x")})
		require.NoError(t, err)
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
	}
	for i := 0; i < 100; i++ {
		select {
		case <-cons.Deliveries():
		case <-ctx.Done():
			t.Fatalf("delivery %d stalled", i)
		}
	}
	var last uint64
	for last < 100 {
		select {
		case n := <-notices:
			require.True(t, n.Ack)
			require.Greater(t, n.DeliveryTag, last, "in order")
			last = n.DeliveryTag
		case <-ctx.Done():
			t.Fatalf("confirm notices stopped at %d", last)
		}
	}
}

// A returned message with no return handler is logged, never dropped
// without a trace; logs and errors never show the password.
func TestBrokerUnhandledReturnIsLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var logs testenv.Buffer
	c := dialTest(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, ch.Publish(ctx, "", "warren.nobody."+t.Name(), Publishing{Mandatory: true, Body: []byte("r")}))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "returned") }, 5*time.Second, 20*time.Millisecond)
	require.Contains(t, logs.String(), "reply_code=312")

	_, err = Dial(ctx, "amqp://guest:S3cretPassw0rd@"+brokerAddr()+"/")
	require.ErrorIs(t, err, AccessRefused)
	require.NotContains(t, err.Error(), "S3cretPassw0rd")
}

// A publisher without confirms still learns of channel errors: Err and
// NotifyClose report the 404 of a publish to a missing exchange.
func TestBrokerChannelErrAndNotifyClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	closed := ch.NotifyClose(make(chan error, 2))
	require.NoError(t, ch.Publish(ctx, "warren.no-such-exchange."+t.Name(), "k", Publishing{Body: []byte("x")}))
	select {
	case err := <-closed:
		require.ErrorIs(t, err, NotFound)
	case <-ctx.Done():
		t.Fatal("no close notification")
	}
	require.ErrorIs(t, ch.Err(), NotFound)
	_, err = ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err, "the next call reopens the channel")
	require.NoError(t, ch.Err())
	require.NoError(t, ch.Close(ctx))
	require.ErrorIs(t, ch.Err(), ErrClosed)
	select {
	case err, ok := <-closed:
		require.False(t, ok, "the user's own close sends nothing and closes the channel: %v", err)
	case <-ctx.Done():
		t.Fatal("NotifyClose's channel did not close after Close")
	}
}

// A Handler consumer receives every delivery on the reader goroutine, in
// order, can ack from there, and its Deliveries channel closes when it is
// cancelled.
func TestBrokerHandlerConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	const n = 500
	got := make(chan string, n)
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{Handler: func(d Delivery) {
		got <- string(d.Body)
		if err := d.Ack(false); err != nil {
			t.Errorf("ack: %v", err)
		}
	}})
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte(fmt.Sprint(i))}))
	}
	for i := 0; i < n; i++ {
		select {
		case body := <-got:
			require.Equal(t, fmt.Sprint(i), body)
		case <-ctx.Done():
			t.Fatalf("delivery %d never reached the handler", i)
		}
	}
	require.NoError(t, cons.Cancel(ctx))
	_, open := <-cons.Deliveries()
	require.False(t, open)
	q2, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
	require.NoError(t, err)
	require.Zero(t, q2.Messages, "every message was acked from the handler")
}

// Many goroutines write directly at once (one-at-a-time publishers on
// their own channels, a channel consumer and a Handler consumer acking)
// while the writer coalesces the rest: every message arrives once and
// every ack lands, so no bytes were interleaved or lost.
func TestBrokerConcurrentDirectWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	admin, err := c.Channel(ctx)
	require.NoError(t, err)
	qa, err := admin.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	qb, err := admin.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	const publishers, each = 4, 300
	total := publishers * each
	gotA, gotB := make(chan struct{}), make(chan struct{})
	seenA, seenB := 0, 0
	consA, err := c.Channel(ctx)
	require.NoError(t, err)
	ca, err := consA.Consume(ctx, qa.Name, ConsumeOptions{})
	require.NoError(t, err)
	go func() {
		for d := range ca.Deliveries() {
			if d.Ack(false) == nil {
				if seenA++; seenA == total/2 {
					close(gotA)
				}
			}
		}
	}()
	consB, err := c.Channel(ctx)
	require.NoError(t, err)
	_, err = consB.Consume(ctx, qb.Name, ConsumeOptions{Handler: func(d Delivery) {
		if d.Ack(false) == nil {
			if seenB++; seenB == total/2 {
				close(gotB)
			}
		}
	}})
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := c.Channel(ctx)
			if err == nil {
				err = ch.ConfirmSelect(ctx)
			}
			for i := 0; i < each && err == nil; i++ {
				q := qa.Name
				if (p+i)%2 == 1 {
					q = qb.Name
				}
				_, err = confirmPublish(ctx, ch, "", q, Publishing{Body: []byte(fmt.Sprint(p, i))})
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, got := range []chan struct{}{gotA, gotB} {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("not every message was consumed")
		}
	}
	// Every ack landed: nothing is left unacknowledged on either queue.
	require.NoError(t, consA.Close(ctx))
	require.NoError(t, consB.Close(ctx))
	for _, q := range []string{qa.Name, qb.Name} {
		st, err := admin.QueueDeclare(ctx, q, QueueOptions{Passive: true})
		require.NoError(t, err)
		require.Zero(t, st.Messages, "messages left (unacked ones are requeued on close)")
	}
}
