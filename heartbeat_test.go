package warren

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A 3-second heartbeat keeps an idle connection to the real broker alive
// for 15 seconds, with heartbeat frames going both ways.
func TestBrokerHeartbeatKeepsIdleConnectionAlive(t *testing.T) {
	t.Parallel() // 15 s of wall-clock time: let the other tests run meanwhile
	var sent, received atomic.Int64
	c := dialTest(t, Config{
		Heartbeat: 3 * time.Second,
		Trace: func(dir Direction, ch uint16, frame string) {
			if frame != "heartbeat" {
				return
			}
			if dir == Sent {
				sent.Add(1)
			} else {
				received.Add(1)
			}
		},
	})
	require.Equal(t, 3*time.Second, c.Tuning().Heartbeat)
	select {
	case <-c.Done():
		t.Fatalf("connection died while idle: %v", c.Err())
	case <-time.After(15 * time.Second):
	}
	require.True(t, c.IsAlive())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := c.Channel(ctx)
	require.NoError(t, err, "the connection still works after 15 s idle")
	require.NoError(t, ch.Close(ctx))
	// RabbitMQ sends one every 3 s / 2; we send one when idle for 1.5 s.
	require.GreaterOrEqual(t, received.Load(), int64(4), "heartbeats from the broker")
	require.GreaterOrEqual(t, sent.Load(), int64(4), "heartbeats to the broker")
}
