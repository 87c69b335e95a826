//go:build brokerglobal

package warren

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// A broker restart (stop_app, start_app) is survived without a line of
// reconnect code: the same handles publish and consume afterwards, and
// what was confirmed before is still there.
func TestBrokerGlobalRecoveryRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := dialURL(t, brokerURL(), Config{})
	events := watchRecovery(c)
	closes := c.NotifyClose(make(chan error, 1))
	ch := newChannel(t, ctx, c)
	qn := testQueueName(t)
	durableQueue(t, ctx, brokerURL(), qn, nil)
	pub := confirmChannel(t, ctx, c)
	persistent := Publishing{Properties: proto.Properties{DeliveryMode: proto.Persistent}}
	for i := range 3 {
		persistent.Body = []byte(fmt.Sprint("before ", i))
		publishConfirmed(t, ctx, pub, "", qn, persistent)
	}

	rabbitmqctl(t, "stop_app")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			rabbitmqctl(t, "start_app")
		}
	})
	lost, _ := events.waitFor(t, RecoveryLost, 30*time.Second)
	requireConnErr(t, lost.Err, ConnectionForced)
	events.waitFor(t, RecoveryRetrying, 10*time.Second)
	rabbitmqctl(t, "start_app")
	restarted = true
	rec, _ := events.waitFor(t, RecoveryRecovered, time.Minute)
	require.Empty(t, rec.NotRestored)
	select {
	case err := <-closes:
		t.Fatalf("NotifyClose fired for a recovered restart: %v", err)
	default:
	}

	persistent.Body = []byte("after")
	publishConfirmed(t, ctx, pub, "", qn, persistent)
	cons, err := ch.Consume(ctx, qn, ConsumeOptions{})
	require.NoError(t, err)
	var got []string
	for len(got) < 4 {
		d := receive(t, ctx, cons)
		got = append(got, string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	require.Equal(t, []string{"before 0", "before 1", "before 2", "after"}, got, "durable, persistent, confirmed: kept across the restart")
}
