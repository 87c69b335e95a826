package statemachine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

func TestConnectionBlocked(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		require.False(tc.t, tc.conn.Blocked())
		tc.writeMethod(0, &frames.ConnectionBlocked{Reason: "low on memory"})
		e := tc.wantEvent(EventBlocked)
		require.Equal(tc.t, "low on memory", e.Reason)
		require.True(tc.t, tc.conn.Blocked())
		tc.wantIdle()
		// Publishing is still the caller's decision.
		tc.openChannel(1)
		publish(tc, 1, 0, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))
		tc.writeMethod(0, &frames.ConnectionUnblocked{})
		tc.wantEvent(EventUnblocked)
		require.False(tc.t, tc.conn.Blocked())
		tc.wantIdle()
	})
}

func TestServerChannelFlow(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		require.True(tc.t, tc.conn.FlowActive(1))
		tc.writeMethod(1, &frames.ChannelFlow{Active: false})
		tc.wantMethod(1, &frames.ChannelFlowOK{Active: false})
		e := tc.wantEvent(EventFlow)
		require.Equal(tc.t, Event{Kind: EventFlow, Channel: 1, Active: false}, e)
		require.False(tc.t, tc.conn.FlowActive(1))
		tc.wantIdle()
		tc.writeMethod(1, &frames.ChannelFlow{Active: true})
		tc.wantMethod(1, &frames.ChannelFlowOK{Active: true})
		e = tc.wantEvent(EventFlow)
		require.True(tc.t, e.Active)
		require.True(tc.t, tc.conn.FlowActive(1))
		tc.wantIdle()
	})
}

func TestClientChannelFlow(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.call(1, &frames.ChannelFlow{Active: false})
	tc.reply(1, frames.MethodChannelFlow, &frames.ChannelFlowOK{Active: false})
	require.True(t, tc.conn.FlowActive(1), "the broker's flow, not ours")
	tc.wantIdle()
}

func TestServerBasicCancel(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "cancel-me", false)
		tc.consume(1, "keep", false)
		tc.writeMethod(1, &frames.BasicCancel{ConsumerTag: "cancel-me"})
		tc.wantMethod(1, &frames.BasicCancelOK{ConsumerTag: "cancel-me"})
		e := tc.wantEvent(EventConsumerCancelled)
		require.Equal(tc.t, Event{Kind: EventConsumerCancelled, Channel: 1, ConsumerTag: "cancel-me"}, e)
		require.Equal(tc.t, []string{"keep"}, tc.conn.Consumers(1))
		tc.wantIdle()
		// RabbitMQ sends it with nowait: no cancel-ok.
		tc.writeMethod(1, &frames.BasicCancel{ConsumerTag: "keep", NoWait: true})
		e = tc.wantEvent(EventConsumerCancelled)
		require.Equal(tc.t, "keep", e.ConsumerTag)
		require.Empty(tc.t, tc.conn.Consumers(1))
		tc.wantIdle()
		// The tag may be used again.
		tc.consume(1, "cancel-me", false)
	})
}

func TestServerCancelCrossesClientCancel(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.consume(1, "c", false)
	tc.call(1, &frames.BasicCancel{ConsumerTag: "c"})
	tc.writeMethod(1, &frames.BasicCancel{ConsumerTag: "c", NoWait: true})
	tc.wantEvent(EventConsumerCancelled)
	// Our cancel still gets its reply.
	tc.reply(1, frames.MethodBasicCancel, &frames.BasicCancelOK{ConsumerTag: "c"})
	tc.wantIdle()
}

func TestUpdateSecret(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tok, err := tc.conn.UpdateSecret("new-token", "refresh")
		require.NoError(tc.t, err)
		tc.track(0, tok)
		tc.wantMethod(0, &frames.ConnectionUpdateSecret{NewSecret: "new-token", Reason: "refresh"})
		tc.wantIdle()
		tc.writeMethod(0, &frames.ConnectionUpdateSecretOK{})
		e := tc.wantEvent(EventReply)
		require.Equal(tc.t, Event{Kind: EventReply, Channel: 0, Token: tok, Request: frames.MethodConnectionUpdateSecret, Method: &frames.ConnectionUpdateSecretOK{}}, e)
		tc.wantIdle()
	})
}

func TestUpdateSecretNotOpen(t *testing.T) {
	tc := newTestConn(t, testConfig())
	tok, err := tc.conn.UpdateSecret("s", "r")
	require.ErrorIs(t, err, ErrNotOpen)
	require.Zero(t, tok)
	tc.wantIdle()
}

func TestUpdateSecretUnanswered(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tok, err := tc.conn.UpdateSecret("s", "r")
	require.NoError(t, err)
	tc.track(0, tok)
	tc.readMethod(0)
	tc.writeMethod(0, &frames.ConnectionUpdateSecretOK{})
	tc.wantEvent(EventReply)
	tc.writeMethod(0, &frames.ConnectionUpdateSecretOK{}) // a second, unasked
	tc.wantConnectionClose(proto.CommandInvalid)
}

func TestTrace(t *testing.T) {
	type line struct {
		dir   Direction
		ch    uint16
		frame string
	}
	var lines []line
	cfg := testConfig()
	cfg.Trace = func(dir Direction, ch uint16, frame string) { lines = append(lines, line{dir, ch, frame}) }
	tc := newOpenConn(t, cfg, 0)
	tc.openChannel(1)
	tc.consume(1, "c", true)
	publish(tc, 1, 0, &frames.BasicPublish{RoutingKey: "q"}, []byte("body"))
	tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1}, nil, []byte("x"))
	tc.wantEvent(EventDelivery)
	tc.writeHeartbeat()
	var sent, received int
	for _, l := range lines {
		require.NotEmpty(t, l.frame)
		if l.dir == Sent {
			sent++
		} else {
			received++
		}
	}
	// protocol header, start-ok, tune-ok, open, channel.open, consume,
	// publish, its header and its one body frame
	require.Equal(t, 9, sent)
	// start, tune, open-ok, open-ok, consume-ok, deliver, header, body,
	// heartbeat
	require.Equal(t, 9, received)
	require.Equal(t, "->", Sent.String())
	require.Equal(t, "<-", Received.String())
}

func TestStringers(t *testing.T) {
	for s := StateNew; s <= StateClosed; s++ {
		require.NotEmpty(t, s.String())
	}
	for s := ChannelFree; s <= ChannelAbandoned; s++ {
		require.NotEmpty(t, s.String())
	}
	for k := EventNone; k <= EventClosed; k++ {
		require.NotEqual(t, "unknown", k.String(), "kind %d", k)
	}
	require.Equal(t, "unknown", (EventClosed + 1).String())
}
