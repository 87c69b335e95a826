package statemachine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// newHeartbeatConn negotiates a 4 s heartbeat.
func newHeartbeatConn(t testing.TB, cfg Config, opts ...testConnOption) *testConn {
	t.Helper()
	cfg.Heartbeat = 4 * time.Second
	tc := newTestConn(t, cfg, opts...)
	heartbeatHandshake(tc)
	return tc
}

// hbStep advances the clock by d and checks that the timer is armed.
func (tc *testConn) hbStep(d time.Duration) {
	tc.t.Helper()
	tc.advance(d)
	if tc.conn.State() == StateOpen {
		dl := tc.conn.Deadline()
		require.False(tc.t, dl.IsZero(), "no timer while heartbeats are on")
		require.True(tc.t, dl.After(tc.now), "deadline %v not after now %v", dl, tc.now)
	}
}

func TestHeartbeatSent(t *testing.T) {
	testAllModes(t, heartbeatConfig(), func(tc *testConn) {
		heartbeatHandshake(tc)
		// t=0: tune-ok and open went out in this window.
		require.Equal(tc.t, testStart.Add(2*time.Second), tc.conn.Deadline())
		tc.hbStep(2 * time.Second) // t=2
		tc.wantIdle()
		tc.writeHeartbeat()
		tc.hbStep(2 * time.Second) // t=4: nothing sent for 2 s
		tc.wantHeartbeat()
		tc.wantIdle()
		tc.writeHeartbeat()
		tc.hbStep(time.Second) // t=5
		tc.wantIdle()
		tc.openChannel(1) // sends channel.open at t=5
		publish(tc, 1, 0, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))
		tc.hbStep(time.Second) // t=6: something went out in the window
		tc.wantIdle()
		tc.writeHeartbeat()
		tc.hbStep(2 * time.Second) // t=8
		tc.wantHeartbeat()
		tc.writeHeartbeat()
		tc.hbStep(2 * time.Second) // t=10
		tc.wantHeartbeat()
		tc.writeHeartbeat()
		// A publish only, no method: it counts too.
		tc.hbStep(time.Second) // t=11
		seq, err := tc.conn.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("y"), nil)
		require.NoError(tc.t, err)
		require.Zero(tc.t, seq)
		tc.wantContent(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("y"))
		tc.hbStep(time.Second) // t=12
		tc.wantIdle()
		require.Equal(tc.t, StateOpen, tc.conn.State())
	})
}

// heartbeatHandshake negotiates the 4 s heartbeat of heartbeatConfig.
func heartbeatHandshake(tc *testConn) {
	tc.t.Helper()
	hs := defaultHandshake()
	hs.tune.Heartbeat = 60
	tc.handshakeWith(hs)
	require.Equal(tc.t, 4*time.Second, tc.conn.Tuning().Heartbeat)
}

func heartbeatConfig() Config {
	cfg := testConfig()
	cfg.Heartbeat = 4 * time.Second
	return cfg
}

func TestHeartbeatPeerDead(t *testing.T) {
	testAllModes(t, heartbeatConfig(), func(tc *testConn) {
		heartbeatHandshake(tc)
		tc.openChannel(1) // fed the open-ok at t=0
		// Nothing comes in any more. Still alive while the silence is
		// shorter than HeartbeatMisses (2) intervals.
		for range 4 { // t=2, 4, 6, 8
			tc.hbStep(2 * time.Second)
			if len(tc.out) > 0 {
				tc.wantHeartbeat()
			}
			tc.wantNoEvent()
			require.Equal(tc.t, StateOpen, tc.conn.State())
		}
		tc.hbStep(2 * time.Second) // t=10: 2 intervals past the last tick that saw data
		ch := tc.wantEvent(EventChannelClosed)
		require.ErrorIs(tc.t, ch.Err, ErrHeartbeatTimeout)
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(tc.t, e.Err, ErrHeartbeatTimeout)
		require.Equal(tc.t, StateClosed, tc.conn.State())
		require.True(tc.t, tc.conn.Deadline().IsZero())
		// No close handshake with a dead peer.
		for len(tc.out) > 0 {
			tc.wantHeartbeat()
		}
		tc.wantIdle()
	})
}

func TestHeartbeatPeerDeadAfterOneLongGap(t *testing.T) {
	tc := newHeartbeatConn(t, testConfig())
	tc.hbStep(2 * time.Second)
	tc.advance(30 * time.Second) // the process was suspended
	require.ErrorIs(t, tc.wantClosed(), ErrHeartbeatTimeout)
}

func TestHeartbeatMissesConfig(t *testing.T) {
	cfg := testConfig()
	cfg.HeartbeatMisses = 4
	tc := newHeartbeatConn(t, cfg)
	for range 8 { // t=2 … 16: 14 s of silence after the tick at t=2 is under 4 intervals
		tc.hbStep(2 * time.Second)
		for len(tc.out) > 0 {
			tc.wantHeartbeat()
		}
		tc.wantNoEvent()
	}
	tc.hbStep(2 * time.Second) // t=18: 16 s since the tick at t=2
	require.ErrorIs(t, tc.wantClosed(), ErrHeartbeatTimeout)
}

func TestHeartbeatServerAlive(t *testing.T) {
	testAllModes(t, heartbeatConfig(), func(tc *testConn) {
		heartbeatHandshake(tc)
		for i := range 60 { // a minute, in 1 s steps, a server heartbeat every 4 s
			if i%4 == 3 {
				tc.writeHeartbeat()
			}
			tc.hbStep(time.Second)
			for len(tc.out) > 0 {
				tc.wantHeartbeat()
			}
			tc.wantNoEvent()
		}
		require.Equal(tc.t, StateOpen, tc.conn.State())
	})
}

func TestHeartbeatAnyInputCounts(t *testing.T) {
	tc := newHeartbeatConn(t, testConfig())
	tc.openChannel(1)
	tc.consume(1, "c", true)
	for i := range 30 {
		if i%3 == 0 { // deliveries, no heartbeats
			tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: uint64(i + 1)}, nil, []byte("x"))
			tc.wantEvent(EventDelivery)
		}
		tc.hbStep(2 * time.Second)
		for len(tc.out) > 0 {
			tc.wantHeartbeat()
		}
		tc.wantNoEvent()
	}
	require.Equal(t, StateOpen, tc.conn.State())
}

func TestHeartbeatNotDuringClose(t *testing.T) {
	tc := newHeartbeatConn(t, testConfig())
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	tc.wantConnectionClose(200)
	for range 4 {
		tc.advance(2 * time.Second)
		tc.wantIdle()
	}
	require.Equal(t, testStart.Add(DefaultCloseTimeout), tc.conn.Deadline())
	tc.advance(2 * time.Second)
	require.ErrorIs(t, tc.wantClosed(), ErrCloseTimeout)
}

func TestNoHeartbeatNoTimer(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	require.Zero(t, tc.conn.Tuning().Heartbeat)
	require.True(t, tc.conn.Deadline().IsZero())
	tc.advance(24 * time.Hour)
	tc.wantIdle()
	require.Equal(t, StateOpen, tc.conn.State())
}

func TestHeartbeatDuringHandshake(t *testing.T) {
	// After tune the machine already sends heartbeats while it waits for
	// open-ok; the handshake timeout still applies.
	cfg := testConfig()
	cfg.Heartbeat = 4 * time.Second
	tc := newTestConn(t, cfg)
	tc.serverStartAndWantStartOK("PLAIN")
	tc.writeMethod(0, &frames.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 4})
	tc.readMethod(0)
	tc.readMethod(0)
	tc.writeHeartbeat()
	tc.advance(2 * time.Second)
	tc.wantIdle()
	tc.writeHeartbeat()
	tc.advance(2 * time.Second)
	tc.wantHeartbeat()
	tc.writeMethod(0, &frames.ConnectionOpenOK{})
	tc.wantEvent(EventConnected)
}
