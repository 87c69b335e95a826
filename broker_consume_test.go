package warren

// Integration tests of consuming, getting, acknowledging and recovering
// against a real RabbitMQ (see integration_test.go and broker_ops_test.go).

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// recv waits for the consumer's next delivery.
func recv(t *testing.T, ctx context.Context, cons *Consumer) Delivery {
	t.Helper()
	select {
	case d, ok := <-cons.Deliveries():
		require.True(t, ok, "consumer %s ended: %v", cons.Tag, cons.Err())
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("no delivery for consumer %s", cons.Tag)
	case <-ctx.Done():
		t.Fatalf("no delivery for consumer %s: %v", cons.Tag, ctx.Err())
	}
	return Delivery{}
}

// requireNoDelivery checks that nothing arrives for the consumer within
// wait.
func requireNoDelivery(t *testing.T, cons *Consumer, wait time.Duration) {
	t.Helper()
	select {
	case d, ok := <-cons.Deliveries():
		if ok {
			t.Fatalf("unexpected delivery %q (tag %d) for consumer %s", d.Body, d.DeliveryTag, cons.Tag)
		}
		t.Fatalf("consumer %s ended: %v", cons.Tag, cons.Err())
	case <-time.After(wait):
	}
}

// requireEnded waits until the consumer's Deliveries channel closes.
func requireEnded(t *testing.T, cons *Consumer) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-cons.Deliveries():
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("consumer %s never ended", cons.Tag)
		}
	}
}

func publishN(t *testing.T, ctx context.Context, ch *Channel, queue string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		publishConfirmed(t, ctx, ch, "", queue, Publishing{Body: []byte(fmt.Sprintf("m%d", i))})
	}
}

func TestBrokerQos(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	publishN(t, ctx, pub, q.Name, 5)

	require.NoError(t, ch.Qos(ctx, QosOptions{PrefetchCount: 2}))
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{Prefetch: 100}) // the channel's QoS wins
	require.NoError(t, err)
	d1 := recv(t, ctx, cons)
	d2 := recv(t, ctx, cons)
	require.Equal(t, "m0", string(d1.Body))
	require.Equal(t, "m1", string(d2.Body))
	requireNoDelivery(t, cons, 300*time.Millisecond) // prefetch 2 reached
	require.Equal(t, 3, queueDepth(t, ctx, pub, q.Name))

	require.NoError(t, d1.Ack(false))
	d3 := recv(t, ctx, cons)
	require.Equal(t, "m2", string(d3.Body))
	requireNoDelivery(t, cons, 200*time.Millisecond)
	require.NoError(t, d3.Ack(true)) // acks d2 too: two more come
	require.Equal(t, "m3", string(recv(t, ctx, cons).Body))
	d5 := recv(t, ctx, cons)
	require.Equal(t, "m4", string(d5.Body))
	require.NoError(t, d5.Ack(true))
	require.NoError(t, cons.Cancel(ctx))
	requireEnded(t, cons)
	require.NoError(t, cons.Err())
	require.Equal(t, 0, queueDepth(t, ctx, pub, q.Name))
}

func TestBrokerConsumeArguments(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	hiCh := newChannel(t, ctx, c)
	loCh := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	q, err := pub.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	lo, err := loCh.Consume(ctx, q.Name, ConsumeOptions{ConsumerTag: "low"})
	require.NoError(t, err)
	hi, err := hiCh.Consume(ctx, q.Name, ConsumeOptions{ConsumerTag: "high",
		Arguments: proto.Table{{Name: "x-priority", Value: proto.Int32(10)}}})
	require.NoError(t, err)
	// While the high-priority consumer has room, it takes everything.
	publishN(t, ctx, pub, q.Name, 20)
	for i := 0; i < 20; i++ {
		d := recv(t, ctx, hi)
		require.Equal(t, fmt.Sprintf("m%d", i), string(d.Body))
		require.Equal(t, "high", d.ConsumerTag)
		require.NoError(t, d.Ack(false))
	}
	requireNoDelivery(t, lo, 200*time.Millisecond)

	// The broker reads the argument: a badly typed x-priority is refused.
	bad := newChannel(t, ctx, c)
	_, err = bad.Consume(ctx, q.Name, ConsumeOptions{Arguments: proto.Table{{Name: "x-priority", Value: proto.String("high")}}})
	ce := requireChannelErr(t, err, PreconditionFailed)
	require.Contains(t, ce.Text, "x-priority")

	require.NoError(t, hi.Cancel(ctx))
	require.NoError(t, lo.Cancel(ctx))
	requireEnded(t, hi)
	requireEnded(t, lo)
}

func TestBrokerExclusiveConsume(t *testing.T) {
	ctx := brokerCtx(t)
	owner := dialTest(t, Config{})
	other := dialTest(t, Config{})
	och := newChannel(t, ctx, owner)
	name := testQueueName(t)
	// Not auto-delete: it must outlive the first subtest's consumer.
	_, err := och.QueueDeclare(ctx, name, QueueOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = och.QueueDelete(context.Background(), name, QueueDeleteOptions{}) })

	// RabbitMQ answers both conflicts with 403 ACCESS_REFUSED (not 405
	// RESOURCE_LOCKED, which it keeps for exclusive queues).
	t.Run("exclusive consumer first", func(t *testing.T) {
		excl, err := och.Consume(ctx, name, ConsumeOptions{Exclusive: true, NoAck: true})
		require.NoError(t, err)
		xch := newChannel(t, ctx, other)
		_, err = xch.Consume(ctx, name, ConsumeOptions{NoAck: true})
		ce := requireChannelErr(t, err, AccessRefused)
		require.Contains(t, ce.Text, "in exclusive use")
		// Also refused on the owner's own connection.
		sameConn := newChannel(t, ctx, owner)
		_, err = sameConn.Consume(ctx, name, ConsumeOptions{NoAck: true})
		requireChannelErr(t, err, AccessRefused)
		// The exclusive consumer still gets the queue's messages.
		pub := confirmChannel(t, ctx, other)
		publishConfirmed(t, ctx, pub, "", name, Publishing{Body: []byte("to the exclusive consumer")})
		require.Equal(t, "to the exclusive consumer", string(recv(t, ctx, excl).Body))
		require.NoError(t, excl.Cancel(ctx))
		requireEnded(t, excl)
	})

	t.Run("exclusive consumer second", func(t *testing.T) {
		shared, err := och.Consume(ctx, name, ConsumeOptions{NoAck: true})
		require.NoError(t, err)
		xch := newChannel(t, ctx, other)
		_, err = xch.Consume(ctx, name, ConsumeOptions{Exclusive: true, NoAck: true})
		ce := requireChannelErr(t, err, AccessRefused)
		require.Contains(t, ce.Text, "in exclusive use", "the same text both ways")
		require.NoError(t, shared.Cancel(ctx))
		requireEnded(t, shared)
		// Without other consumers the exclusive consume succeeds, on the
		// same (reopened) Channel.
		excl, err := xch.Consume(ctx, name, ConsumeOptions{Exclusive: true, NoAck: true})
		require.NoError(t, err)
		require.Equal(t, uint64(2), xch.Incarnation())
		require.NoError(t, excl.Cancel(ctx))
		requireEnded(t, excl)
	})
}

// RabbitMQ ignores basic.consume's no-local flag: a consumer still gets
// the messages published on its own connection.
func TestBrokerNoLocalIgnored(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{NoLocal: true, NoAck: true})
	require.NoError(t, err)
	require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("same channel")}))
	pub := newChannel(t, ctx, c)
	require.NoError(t, pub.Publish(ctx, "", q.Name, Publishing{Body: []byte("same connection")}))
	require.Equal(t, "same channel", string(recv(t, ctx, cons).Body))
	require.Equal(t, "same connection", string(recv(t, ctx, cons).Body))
	require.Equal(t, []string{cons.Tag}, ch.NoAckConsumers())
	require.NoError(t, cons.Cancel(ctx))
	requireEnded(t, cons)
}

func TestBrokerGetAckNackReject(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	t.Run("empty", func(t *testing.T) {
		d, ok, err := ch.Get(ctx, q.Name, false)
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, Delivery{}, d)
	})

	t.Run("message count", func(t *testing.T) {
		publishN(t, ctx, pub, q.Name, 3)
		for i := 0; i < 3; i++ {
			d, ok, err := ch.Get(ctx, q.Name, true)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, fmt.Sprintf("m%d", i), string(d.Body))
			require.Equal(t, uint32(2-i), d.MessageCount, "messages left")
			require.False(t, d.Redelivered)
			require.Equal(t, "", d.Exchange)
			require.Equal(t, q.Name, d.RoutingKey)
			require.Empty(t, d.ConsumerTag)
		}
		_, ok, err := ch.Get(ctx, q.Name, true)
		require.NoError(t, err)
		require.False(t, ok)
	})

	t.Run("multiple", func(t *testing.T) {
		publishN(t, ctx, pub, q.Name, 6)
		ds := make([]Delivery, 6)
		for i := range ds {
			var ok bool
			ds[i], ok, err = ch.Get(ctx, q.Name, false)
			require.NoError(t, err)
			require.True(t, ok)
			if i > 0 {
				require.Equal(t, ds[i-1].DeliveryTag+1, ds[i].DeliveryTag)
			}
		}
		require.Equal(t, 0, queueDepth(t, ctx, pub, q.Name), "all six unacknowledged")
		require.NoError(t, ds[1].Ack(true))                               // m0, m1 gone
		require.NoError(t, ds[3].Nack(true, true))                        // m2, m3 requeued
		require.NoError(t, ds[4].Reject(false))                           // m4 dropped
		require.NoError(t, ch.Nack(ctx, ds[5].DeliveryTag, false, false)) // m5 dropped
		requireDepthEventually(t, ctx, pub, q.Name, 2)
		for _, want := range []string{"m2", "m3"} {
			d, ok, err := ch.Get(ctx, q.Name, false)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, want, string(d.Body))
			require.True(t, d.Redelivered, "a requeued message is redelivered")
			require.NoError(t, ch.Ack(ctx, d.DeliveryTag, false))
		}
		// Nothing is left, acknowledged or not: closing the channel
		// requeues nothing.
		other := newChannel(t, ctx, c)
		require.NoError(t, ch.Close(ctx))
		_, ok, err := other.Get(ctx, q.Name, true)
		require.NoError(t, err)
		require.False(t, ok)
		ch = other
	})

	t.Run("nack requeue", func(t *testing.T) {
		publishN(t, ctx, pub, q.Name, 1)
		d, ok, err := ch.Get(ctx, q.Name, false)
		require.NoError(t, err)
		require.True(t, ok)
		require.False(t, d.Redelivered)
		require.NoError(t, d.Nack(false, true))
		d2, ok, err := ch.Get(ctx, q.Name, false) // ordered after the nack on the channel
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, d2.Redelivered)
		require.Equal(t, "m0", string(d2.Body))
		require.Greater(t, d2.DeliveryTag, d.DeliveryTag)
		require.NoError(t, d2.Reject(true))
		d3, ok, err := ch.Get(ctx, q.Name, false)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, d3.Redelivered)
		require.NoError(t, d3.Ack(false))
		requireDepthEventually(t, ctx, pub, q.Name, 0)
	})

	t.Run("unknown delivery tag", func(t *testing.T) {
		// Acking a tag never delivered is a channel error (406).
		require.NoError(t, ch.Ack(ctx, 9999, false)) // asynchronous: nothing to wait for
		_, _, err := ch.Get(ctx, q.Name, true)
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "unknown delivery tag 9999")
	})
}

func TestBrokerRecover(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialTest(t, Config{})
			ch := newChannel(t, ctx, c)
			pub := confirmChannel(t, ctx, c)
			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			publishN(t, ctx, pub, q.Name, 3)
			cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{})
			require.NoError(t, err)
			var first []Delivery
			for i := 0; i < 3; i++ {
				d := recv(t, ctx, cons)
				require.False(t, d.Redelivered)
				first = append(first, d)
			}
			require.NoError(t, first[0].Ack(false)) // only m1 and m2 stay unacknowledged

			if async {
				require.NoError(t, ch.RecoverAsync(ctx, true))
			} else {
				require.NoError(t, ch.Recover(ctx, true))
			}
			for _, want := range []string{"m1", "m2"} {
				d := recv(t, ctx, cons)
				require.Equal(t, want, string(d.Body))
				require.True(t, d.Redelivered)
				require.Greater(t, d.DeliveryTag, first[2].DeliveryTag, "redeliveries get new tags")
				require.NoError(t, d.Ack(false))
			}
			requireNoDelivery(t, cons, 200*time.Millisecond)
			require.NoError(t, cons.Cancel(ctx))
			requireEnded(t, cons)
			require.NoError(t, ch.Close(ctx)) // nothing unacknowledged to requeue
			require.Equal(t, 0, queueDepth(t, ctx, pub, q.Name))
		})
	}
}

func TestBrokerConsumerCancelNotification(t *testing.T) {
	t.Run("OnCancel", func(t *testing.T) {
		ctx := brokerCtx(t)
		c := dialTest(t, Config{})
		ch := newChannel(t, ctx, c)
		admin := newChannel(t, ctx, c)
		name := testQueueName(t)
		_, err := ch.QueueDeclare(ctx, name, QueueOptions{})
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.QueueDelete(context.Background(), name, QueueDeleteOptions{}) })
		cancelled := make(chan string, 1)
		cons, err := ch.Consume(ctx, name, ConsumeOptions{ConsumerTag: "watched", OnCancel: func(tag string) { cancelled <- tag }})
		require.NoError(t, err)
		_, err = admin.QueueDelete(ctx, name, QueueDeleteOptions{})
		require.NoError(t, err)
		select {
		case tag := <-cancelled:
			require.Equal(t, "watched", tag)
		case <-time.After(10 * time.Second):
			t.Fatal("OnCancel was not called")
		}
		requireEnded(t, cons)
		require.NoError(t, cons.Err(), "a handled cancel is no error")
		require.Empty(t, c.Topology().Consumers)
		require.Equal(t, uint64(1), ch.Incarnation())
	})

	t.Run("without OnCancel", func(t *testing.T) {
		ctx := brokerCtx(t)
		c := dialTest(t, Config{})
		ch := newChannel(t, ctx, c)
		admin := confirmChannel(t, ctx, c)
		name := testQueueName(t)
		_, err := ch.QueueDeclare(ctx, name, QueueOptions{})
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.QueueDelete(context.Background(), name, QueueDeleteOptions{}) })
		keep, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		doomed, err := ch.Consume(ctx, name, ConsumeOptions{ConsumerTag: "doomed"})
		require.NoError(t, err)
		survivor, err := ch.Consume(ctx, keep.Name, ConsumeOptions{ConsumerTag: "survivor"})
		require.NoError(t, err)

		_, err = admin.QueueDelete(ctx, name, QueueDeleteOptions{})
		require.NoError(t, err)
		requireEnded(t, doomed)
		err = doomed.Err()
		var ce *ChannelError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "doomed", ce.ConsumerTag)
		require.Zero(t, ce.Code, "a cancel carries no reply code")
		require.Equal(t, ch.ID(), ce.Channel)
		require.True(t, IsRecoverable(err))
		require.Contains(t, err.Error(), `consumer "doomed"`)

		// The AMQP channel stays open: the other consumer still gets messages…
		publishConfirmed(t, ctx, admin, "", keep.Name, Publishing{Body: []byte("still consuming")})
		d := recv(t, ctx, survivor)
		require.Equal(t, "still consuming", string(d.Body))
		require.NoError(t, d.Ack(false))
		// …and a new consumer on another queue works on the same Channel.
		other, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		fresh, err := ch.Consume(ctx, other.Name, ConsumeOptions{})
		require.NoError(t, err)
		publishConfirmed(t, ctx, admin, "", other.Name, Publishing{Body: []byte("fresh")})
		d = recv(t, ctx, fresh)
		require.Equal(t, "fresh", string(d.Body))
		require.NoError(t, d.Ack(false))
		require.Equal(t, uint64(1), ch.Incarnation(), "never reopened")
		require.True(t, c.IsAlive())
		tags := []string{}
		for _, dc := range c.Topology().Consumers {
			tags = append(tags, dc.Tag)
		}
		require.ElementsMatch(t, []string{"survivor", fresh.Tag}, tags)
		require.NoError(t, fresh.Cancel(ctx))
		require.NoError(t, survivor.Cancel(ctx))
		requireEnded(t, fresh)
		requireEnded(t, survivor)
	})
}

// Consumer.Cancel called from the goroutine that ranges over Deliveries
// never stalls, even when the broker may send more than the buffer holds
// (a prefetch above ConsumerBuffer, or no-ack): what arrives while it
// waits for cancel-ok is kept and comes out of Deliveries afterwards, in
// order, none dropped.
func TestBrokerCancelFromTheDrainingGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts ConsumeOptions
		want int // deliveries the broker sends before cancel-ok at most / exactly
	}{
		{"manual ack, prefetch 40 over a buffer of 4", ConsumeOptions{Prefetch: 40}, 40},
		{"no-ack, buffer of 4", ConsumeOptions{NoAck: true}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialTest(t, Config{ConsumerBuffer: 4})
			ch := newChannel(t, ctx, c)
			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			publishN(t, ctx, confirmChannel(t, ctx, c), q.Name, 100)
			cons, err := ch.Consume(ctx, q.Name, tc.opts)
			require.NoError(t, err)

			// Let the broker fill the buffer and the reader wait for room.
			first := recv(t, ctx, cons)
			time.Sleep(200 * time.Millisecond)
			short, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			require.NoError(t, cons.Cancel(short), "Cancel from the draining goroutine returns")

			bodies := []string{string(first.Body)}
			for d := range cons.Deliveries() {
				bodies = append(bodies, string(d.Body))
			}
			require.NoError(t, cons.Err())
			if tc.opts.NoAck {
				require.Len(t, bodies, tc.want, "every message the broker sent, none dropped")
			} else {
				require.Len(t, bodies, tc.want, "the prefetch's worth, none dropped")
				require.NoError(t, ch.Ack(ctx, 0, true), "and they can be acknowledged")
			}
			for i, b := range bodies {
				require.Equal(t, fmt.Sprintf("m%d", i), b, "in order")
			}
			left, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
			require.NoError(t, err)
			require.Equal(t, 100-tc.want, left.Messages)
		})
	}
}
