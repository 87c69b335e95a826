package warren

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// deleteQueueAfter deletes queue name when the test ends, over a
// connection of its own (the test's may be closed or broken by then).
func deleteQueueAfter(t *testing.T, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dc, err := DialWith(ctx, brokerURL(), DialOptions{Config: Config{Recovery: Recovery{Disabled: true}}})
		if err != nil {
			t.Errorf("deleting queue %s: %v", name, err)
			return
		}
		defer dc.Close(ctx)
		ch, err := dc.Channel(ctx)
		if err == nil {
			_, err = ch.QueueDelete(ctx, name, QueueDeleteOptions{})
		}
		if err != nil {
			t.Errorf("deleting queue %s: %v", name, err)
		}
	})
}

// declareQueue declares queue name with opts, to be deleted when the test
// ends.
func declareQueue(t *testing.T, ctx context.Context, ch *Channel, name string, opts QueueOptions) {
	t.Helper()
	_, err := ch.QueueDeclare(ctx, name, opts)
	require.NoError(t, err)
	deleteQueueAfter(t, name)
}

// headerInt returns the integer header name of d.
func headerInt(t *testing.T, d Delivery, name string) int64 {
	t.Helper()
	v, ok := d.Properties.Headers.Get(name)
	require.True(t, ok, "header %s missing in %v", name, d.Properties.Headers)
	n, ok := v.AsInt()
	require.True(t, ok, "header %s is %v", name, v)
	return n
}

// headerString returns the string field name of tb.
func headerString(t *testing.T, tb proto.Table, name string) string {
	t.Helper()
	v, ok := tb.Get(name)
	require.True(t, ok, "field %s missing in %v", name, tb)
	str, ok := v.AsString()
	require.True(t, ok, "field %s is %v", name, v)
	return str
}

// getOne fetches one message from queue, waiting for it to be there.
func getOne(t *testing.T, ctx context.Context, ch *Channel, queue string, noAck bool) Delivery {
	t.Helper()
	for {
		d, ok, err := ch.Get(ctx, queue, noAck)
		require.NoError(t, err)
		if ok {
			return d
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no message in %s", queue)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queueArgs(kv ...any) proto.Table {
	var tb proto.Table
	for i := 0; i < len(kv); i += 2 {
		var v proto.Value
		switch x := kv[i+1].(type) {
		case string:
			v = proto.String(x)
		case int:
			v = proto.Int64(int64(x))
		case bool:
			v = proto.Bool(x)
		case proto.Value:
			v = x
		}
		tb.Set(kv[i].(string), v)
	}
	return tb
}

// Quorum queues: a nack that requeues raises x-delivery-count, and past
// x-delivery-limit the message is dead-lettered.
func TestBrokerQuorumQueueDeliveryLimit(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	qn, dlq := testQueueName(t), testQueueName(t)+".dlq"
	declareQueue(t, ctx, ch, dlq, QueueOptions{Durable: true})
	declareQueue(t, ctx, ch, qn, QueueOptions{Durable: true, Arguments: queueArgs(
		"x-queue-type", "quorum", "x-delivery-limit", 2,
		"x-dead-letter-exchange", "", "x-dead-letter-routing-key", dlq)})
	publishConfirmed(t, ctx, ch, "", qn, Publishing{Body: []byte("poison")})

	for want := int64(0); want <= 2; want++ {
		d := getOne(t, ctx, ch, qn, false)
		require.Equal(t, "poison", string(d.Body))
		if want == 0 {
			if _, ok := d.Properties.Headers.Get("x-delivery-count"); ok {
				require.Zero(t, headerInt(t, d, "x-delivery-count"), "the first delivery")
			}
		} else {
			require.Equal(t, want, headerInt(t, d, "x-delivery-count"))
			require.True(t, d.Redelivered)
		}
		require.NoError(t, d.Nack(false, true))
	}
	// The third return is past the limit of 2: dead-lettered.
	d := getOne(t, ctx, ch, dlq, false)
	require.Equal(t, "poison", string(d.Body))
	require.NoError(t, d.Ack(false))
	info, err := ch.QueueDeclare(ctx, qn, QueueOptions{Passive: true})
	require.NoError(t, err)
	require.Zero(t, info.Messages)
}

// Single active consumer: of two consumers, only the first gets messages,
// until it is cancelled; then the second takes over.
func TestBrokerSingleActiveConsumer(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	qn := testQueueName(t)
	declareQueue(t, ctx, ch, qn, QueueOptions{Arguments: queueArgs("x-single-active-consumer", true)})
	cch := newChannel(t, ctx, c)
	first, err := cch.Consume(ctx, qn, ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	second, err := cch.Consume(ctx, qn, ConsumeOptions{NoAck: true})
	require.NoError(t, err)

	publishN(t, ctx, ch, qn, 3)
	for i := range 3 {
		require.Equal(t, fmt.Sprintf("m%d", i), string(recv(t, ctx, first).Body))
	}
	requireNoDelivery(t, second, 200*time.Millisecond)
	require.NoError(t, first.Cancel(ctx))
	publishN(t, ctx, ch, qn, 2)
	for i := range 2 {
		require.Equal(t, fmt.Sprintf("m%d", i), string(recv(t, ctx, second).Body), "the second takes over")
	}
}

// Priority queues hand out higher priorities first.
func TestBrokerPriorityQueue(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	qn := testQueueName(t)
	declareQueue(t, ctx, ch, qn, QueueOptions{Arguments: queueArgs("x-max-priority", 10)})
	for _, p := range []uint8{1, 9, 5, 0} {
		publishConfirmed(t, ctx, ch, "", qn, Publishing{Properties: proto.Properties{Priority: p}, Body: []byte(fmt.Sprint(p))})
	}
	var got []string
	for range 4 {
		got = append(got, string(getOne(t, ctx, ch, qn, true).Body))
	}
	require.Equal(t, []string{"9", "5", "1", "0"}, got)
}

// Dead-lettering of rejected messages and of messages whose per-message
// TTL expired, with the x-death header saying why.
func TestBrokerDeadLetteringAndMessageTTL(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	qn, dlq := testQueueName(t), testQueueName(t)+".dlq"
	declareQueue(t, ctx, ch, dlq, QueueOptions{})
	declareQueue(t, ctx, ch, qn, QueueOptions{Arguments: queueArgs("x-dead-letter-exchange", "", "x-dead-letter-routing-key", dlq)})

	publishConfirmed(t, ctx, ch, "", qn, Publishing{Body: []byte("rejected")})
	d := getOne(t, ctx, ch, qn, false)
	require.NoError(t, d.Reject(false))
	publishConfirmed(t, ctx, ch, "", qn, Publishing{Properties: proto.Properties{Expiration: "1"}, Body: []byte("expired")})

	for _, want := range []struct{ body, reason string }{{"rejected", "rejected"}, {"expired", "expired"}} {
		d := getOne(t, ctx, ch, dlq, true)
		require.Equal(t, want.body, string(d.Body))
		v, ok := d.Properties.Headers.Get("x-death")
		require.True(t, ok, "x-death header")
		deaths, ok := v.AsArray()
		require.True(t, ok)
		require.Len(t, deaths, 1)
		death, ok := deaths[0].AsTable()
		require.True(t, ok)
		require.Equal(t, want.reason, headerString(t, death, "reason"))
		require.Equal(t, qn, headerString(t, death, "queue"))
	}
	_, ok, err := ch.Get(ctx, qn, true)
	require.NoError(t, err)
	require.False(t, ok, "nothing left: the expired message left the queue")
}

// Streams consumed over AMQP 0-9-1 (a prefetch and manual acks are
// required): every delivery carries its offset in x-stream-offset, and
// the consume argument x-stream-offset picks where to start: first, last
// (the last chunk: at or before the last message), next, a numeric
// offset, a timestamp and an interval.
func TestBrokerStreamOffsets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dialTest(t, Config{})
	pub := confirmChannel(t, ctx, c)
	sn := testQueueName(t)
	declareQueue(t, ctx, pub, sn, QueueOptions{Durable: true, Arguments: queueArgs("x-queue-type", "stream")})

	// Two batches more than a second apart: offsets 0-9, then 10-19 at or
	// after split (whole seconds: the timestamp field has no fraction).
	publishN(t, ctx, pub, sn, 10)
	split := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(split) + 100*time.Millisecond)
	for i := 10; i < 20; i++ {
		publishConfirmed(t, ctx, pub, "", sn, Publishing{Body: []byte(fmt.Sprintf("m%d", i))})
	}

	// read consumes from offset and returns the offsets of the first n
	// deliveries, checking each body against its offset.
	read := func(offset proto.Value, n int) []int64 {
		t.Helper()
		ch := newChannel(t, ctx, c)
		cons, err := ch.Consume(ctx, sn, ConsumeOptions{Prefetch: 50, Arguments: queueArgs("x-stream-offset", offset)})
		require.NoError(t, err)
		var got []int64
		for len(got) < n {
			d := recv(t, ctx, cons)
			off := headerInt(t, d, "x-stream-offset")
			require.Equal(t, fmt.Sprintf("m%d", off), string(d.Body))
			got = append(got, off)
			require.NoError(t, d.Ack(false))
		}
		require.NoError(t, cons.Cancel(ctx))
		require.NoError(t, ch.Close(ctx))
		return got
	}
	seq := func(from, to int64) []int64 {
		var s []int64
		for i := from; i <= to; i++ {
			s = append(s, i)
		}
		return s
	}

	require.Equal(t, seq(0, 19), read(proto.String("first"), 20))
	require.Equal(t, seq(5, 9), read(proto.Int64(5), 5))
	require.Equal(t, seq(10, 14), read(proto.Timestamp(split), 5), "from the first message at or after the timestamp")
	require.Equal(t, seq(0, 4), read(proto.String("1h"), 5), "everything of the last hour")
	last := read(proto.String("last"), 1)[0]
	require.LessOrEqual(t, last, int64(19), "the last chunk starts at or before the last message")

	// next: only what is published after the consumer starts.
	ch := newChannel(t, ctx, c)
	cons, err := ch.Consume(ctx, sn, ConsumeOptions{Prefetch: 50, Arguments: queueArgs("x-stream-offset", "next")})
	require.NoError(t, err)
	requireNoDelivery(t, cons, 300*time.Millisecond)
	publishConfirmed(t, ctx, pub, "", sn, Publishing{Body: []byte("m20")})
	d := recv(t, ctx, cons)
	require.Equal(t, int64(20), headerInt(t, d, "x-stream-offset"))
	require.NoError(t, d.Ack(false))
	require.NoError(t, cons.Cancel(ctx))
}
