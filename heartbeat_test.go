package warren

import (
	"context"
	"fmt"
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

// Heartbeat negotiation as the broker sees it: a client asking for none
// (heartbeat=0 in the URI, a negative Config.Heartbeat) gets none, a
// lower interval than the broker's 60 s wins, and the default is 60 s.
func TestBrokerHeartbeatNegotiation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		query string
		cfg   Config
		want  time.Duration
	}{
		{"heartbeat=0 in the URI", "?heartbeat=0", Config{}, 0},
		{"negative Config.Heartbeat", "", Config{Heartbeat: -1}, 0},
		{"heartbeat=7 in the URI", "?heartbeat=7", Config{}, 7 * time.Second},
		{"default", "", Config{}, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := testQueueName(t) // unique: the connection's name
			tc.cfg.ConnectionName = name
			c := dialURL(t, brokerURLWith(t, "guest:guest", "/", tc.query), tc.cfg)
			require.Equal(t, tc.want, c.Tuning().Heartbeat)
			// {t, T}: a bare list of small integers would print as text.
			expr := fmt.Sprintf(`[{t, T} || P <- rabbit_networking:connections(), `+
				`{client_properties, CP} <- rabbit_networking:connection_info(P, [client_properties]), `+
				`lists:keyfind(<<"connection_name">>, 1, CP) =:= {<<"connection_name">>, longstr, <<"%s">>}, `+
				`{timeout, T} <- rabbit_networking:connection_info(P, [timeout])].`, name)
			var out string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				out = rabbitmqctl(t, "eval", expr)
				if out != "[]" || time.Now().After(deadline) {
					break
				}
			}
			require.Equal(t, fmt.Sprintf("[{t,%d}]", tc.want/time.Second), out, "the broker's heartbeat timeout for the connection")
		})
	}
}
