package warren

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/warren-amqp/warren/internal/testenv"
	"github.com/warren-amqp/warren/proto"
)

// TestMain skips the tests that need RabbitMQ (TestBroker…, the
// examples) when none is running, after saying so in one line.
func TestMain(m *testing.M) {
	testenv.SkipWithoutBroker("warren", brokerAddr(), "^(TestBroker|Example)")
	goleak.VerifyTestMain(m)
}

// brokerAddr is the RabbitMQ the integration tests use.
func brokerAddr() string {
	if a := os.Getenv("WARREN_BROKER_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5672"
}

func dialTest(t *testing.T, cfg Config) *Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := net.Dial("tcp", brokerAddr())
	require.NoError(t, err)
	c, err := Open(ctx, nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func testQueueName(t *testing.T) string {
	return fmt.Sprintf("warren.test.%s.%d", t.Name(), time.Now().UnixNano())
}

func TestBrokerPublishConfirmConsumeGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialTest(t, Config{ConnectionName: "warren-test"})
	require.True(t, c.IsAlive())
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NotEmpty(t, q.Name)
	require.NoError(t, ch.ConfirmSelect(ctx))

	const n = 500
	var cfs []*Confirmation
	for i := 0; i < n; i++ {
		cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{
			Properties: proto.Properties{ContentType: "text/plain", Headers: proto.Table{{Name: "i", Value: proto.Int32(int32(i))}}},
			Body:       []byte(fmt.Sprintf("msg %d", i)),
		})
		require.NoError(t, err)
		cfs = append(cfs, cf)
	}
	for i, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked, "publish %d", i)
		require.Equal(t, uint64(i+1), cf.Seq)
	}
	q2, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
	require.NoError(t, err)
	require.Equal(t, n, q2.Messages)

	d, ok, err := ch.Get(ctx, q.Name, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "msg 0", string(d.Body))
	require.Equal(t, "text/plain", d.Properties.ContentType)
	v, _ := d.Properties.Headers.Get("i")
	require.Equal(t, proto.Int32(0), v)
	require.NoError(t, d.Ack(false))

	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{})
	require.NoError(t, err)
	for i := 1; i < n; i++ {
		select {
		case d := <-cons.Deliveries():
			require.Equal(t, fmt.Sprintf("msg %d", i), string(d.Body))
			require.NoError(t, d.Ack(false))
		case <-ctx.Done():
			t.Fatalf("delivery %d never came", i)
		}
	}
	require.NoError(t, cons.Cancel(ctx))
	_, open := <-cons.Deliveries()
	require.False(t, open)
	require.NoError(t, cons.Err())
	require.NoError(t, ch.Close(ctx))
}

func TestBrokerChannelRestoredAfterError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	_, err = ch.QueueDeclare(ctx, testQueueName(t)+".missing", QueueOptions{Passive: true})
	var ce *ChannelError
	require.ErrorAs(t, err, &ce)
	require.True(t, errors.Is(err, NotFound))
	require.Equal(t, proto.ByPeer, ce.Origin)
	require.Equal(t, uint64(1), ch.Incarnation())

	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err, "the channel reopens for the next call")
	require.Equal(t, uint64(2), ch.Incarnation())
	require.NotEmpty(t, q.Name)
	require.True(t, c.IsAlive())
}

// forward calls fn with every value received from c until c is closed, on
// a goroutine of its own.
func forward[T any](c <-chan T, fn func(T)) {
	go func() {
		for v := range c {
			fn(v)
		}
	}()
}
