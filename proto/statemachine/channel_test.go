package statemachine

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// newOpenConn returns a machine past the handshake, with channel_max as
// the server's proposal.
func newOpenConn(t testing.TB, cfg Config, channelMax uint16, opts ...testConnOption) *testConn {
	t.Helper()
	tc := newTestConn(t, cfg, opts...)
	hs := defaultHandshake()
	hs.tune.ChannelMax = channelMax
	tc.handshakeWith(hs)
	return tc
}

func TestChannelIDs(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 3)
	require.Equal(t, ChannelFree, tc.conn.ChannelState(1))
	tc.openChannel(1)
	tc.openChannel(2)
	tc.openChannel(3)

	// Exhausted: nothing is written.
	_, err := tc.conn.OpenChannel()
	require.ErrorIs(t, err, ErrNoFreeChannel)
	tc.wantIdle()

	// Our close does not free the id until close-ok.
	require.NoError(t, tc.conn.CloseChannel(2, proto.Reply{}))
	tc.wantMethod(2, &frames.ChannelClose{ReplyCode: 200})
	require.Equal(t, ChannelClosing, tc.conn.ChannelState(2))
	_, err = tc.conn.OpenChannel()
	require.ErrorIs(t, err, ErrNoFreeChannel)
	tc.wantIdle()
	tc.writeMethod(2, &frames.ChannelCloseOK{})
	e := tc.wantEvent(EventChannelClosed)
	require.Equal(t, uint16(2), e.Channel)
	require.NoError(t, e.Err)
	require.Equal(t, ChannelFree, tc.conn.ChannelState(2))
	tc.openChannel(2)

	// A server-sent close is answered, and frees the id at once.
	tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406, ReplyText: "PRECONDITION_FAILED - x", ClassID: 50, MethodID: 10})
	tc.wantMethod(1, &frames.ChannelCloseOK{})
	e = tc.wantEvent(EventChannelClosed)
	require.Equal(t, uint16(1), e.Channel)
	require.Equal(t, ChannelFree, tc.conn.ChannelState(1))
	tc.openChannel(1)
	_, err = tc.conn.OpenChannel()
	require.ErrorIs(t, err, ErrNoFreeChannel)
	tc.wantIdle()
}

func TestChannelLowestFreeReused(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	require.Equal(t, uint16(DefaultChannelMax), tc.conn.Tuning().ChannelMax)
	for id := uint16(1); id <= 4; id++ {
		tc.openChannel(id)
	}
	for _, id := range []uint16{3, 1} {
		require.NoError(t, tc.conn.CloseChannel(id, proto.Reply{}))
		tc.wantMethod(id, &frames.ChannelClose{ReplyCode: 200})
		tc.writeMethod(id, &frames.ChannelCloseOK{})
		tc.wantEvent(EventChannelClosed)
	}
	tc.openChannel(1)
	tc.openChannel(3)
	tc.openChannel(5)
}

func TestChannelMaxOne(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 1)
	tc.openChannel(1)
	_, err := tc.conn.OpenChannel()
	require.ErrorIs(t, err, ErrNoFreeChannel)
	require.ErrorContains(t, err, "channel_max 1")
	tc.wantIdle()
}

func TestPipelinedRequests(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		id, err := tc.conn.OpenChannel()
		require.NoError(tc.t, err)
		// Requests pipelined before open-ok.
		declare := &frames.QueueDeclare{Queue: "q", Durable: true, Arguments: proto.Table{{Name: "x-max-length", Value: proto.Int32(10)}}}
		bind := &frames.QueueBind{Queue: "q", Exchange: "x", RoutingKey: "k"}
		qos := &frames.BasicQos{PrefetchCount: 10}
		var toks []Token
		for _, m := range []frames.Method{declare, bind, qos} {
			tok, err := tc.conn.Call(id, m)
			require.NoError(tc.t, err)
			tc.track(id, tok)
			toks = append(toks, tok)
		}
		tc.wantMethod(id, &frames.ChannelOpen{})
		tc.wantMethod(id, declare)
		tc.wantMethod(id, bind)
		tc.wantMethod(id, qos)
		tc.wantIdle()
		require.Equal(tc.t, 4, tc.conn.channel(id).pending.len())

		tc.writeMethod(id, &frames.ChannelOpenOK{})
		tc.wantEvent(EventChannelOpen)
		require.Equal(tc.t, toks[0], tc.reply(id, frames.MethodQueueDeclare, &frames.QueueDeclareOK{Queue: "q", MessageCount: 3, ConsumerCount: 1}).Token)
		require.Equal(tc.t, toks[1], tc.reply(id, frames.MethodQueueBind, &frames.QueueBindOK{}).Token)
		require.Equal(tc.t, toks[2], tc.reply(id, frames.MethodBasicQos, &frames.BasicQosOK{}).Token)
		require.Zero(tc.t, tc.conn.channel(id).pending.len())
		tc.wantIdle()
	})
}

func TestReplyOutOfOrder(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.call(1, &frames.QueueDeclare{Queue: "q"})
	tc.call(1, &frames.QueueBind{Queue: "q", Exchange: "x"})
	tc.writeMethod(1, &frames.QueueBindOK{})
	cl := tc.wantConnectionClose(proto.CommandInvalid)
	require.Equal(t, frames.MethodQueueBindOK.ClassID(), cl.ClassID)
	require.Equal(t, frames.MethodQueueBindOK.MethodID(), cl.MethodID)
}

func TestNoWaitHasNoPendingReply(t *testing.T) {
	tests := []frames.Method{
		&frames.ExchangeDeclare{Exchange: "x", Type: "direct", NoWait: true},
		&frames.ExchangeDelete{Exchange: "x", NoWait: true},
		&frames.ExchangeBind{Destination: "a", Source: "b", NoWait: true},
		&frames.ExchangeUnbind{Destination: "a", Source: "b", NoWait: true},
		&frames.QueueDeclare{Queue: "q", NoWait: true},
		&frames.QueueBind{Queue: "q", Exchange: "x", NoWait: true},
		&frames.QueuePurge{Queue: "q", NoWait: true},
		&frames.QueueDelete{Queue: "q", NoWait: true},
		&frames.BasicConsume{Queue: "q", ConsumerTag: "c", NoWait: true},
		&frames.BasicCancel{ConsumerTag: "c", NoWait: true},
		&frames.ConfirmSelect{NoWait: true},
		&frames.BasicAck{DeliveryTag: 1},
		&frames.BasicNack{DeliveryTag: 1},
		&frames.BasicReject{DeliveryTag: 1},
		&frames.BasicRecoverAsync{Requeue: true},
	}
	for _, m := range tests {
		t.Run(m.Key().String(), func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			tc.call(1, m)
			require.Zero(t, tc.conn.channel(1).pending.len())
			tc.wantIdle()
			if replies := frames.Replies(m.Key()); len(replies) > 0 {
				// A reply nobody asked for is a protocol violation.
				tc.writeMethod(1, frames.NewMethod(replies[0]))
				tc.wantConnectionClose(proto.CommandInvalid)
			}
		})
	}
}

func TestRequestsOnUnusableChannel(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.openChannel(2)
	require.NoError(t, tc.conn.CloseChannel(2, proto.Reply{}))
	tc.wantMethod(2, &frames.ChannelClose{ReplyCode: 200})

	for _, id := range []uint16{2, 3, 999} { // closing, never opened, beyond any opened
		t.Logf("channel %d", id)
		tok, err := tc.conn.Call(id, &frames.QueueDeclare{Queue: "q"})
		require.ErrorIs(t, err, ErrChannelNotOpen)
		require.Zero(t, tok)
		_, err = tc.conn.Publish(id, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("x"), nil)
		require.ErrorIs(t, err, ErrChannelNotOpen)
		require.ErrorIs(t, tc.conn.CloseChannel(id, proto.Reply{}), ErrChannelNotOpen)
		tc.wantIdle()
	}
	_, err := tc.conn.Call(2, &frames.BasicQos{})
	require.ErrorContains(t, err, "closing")

	// Abandoned after the close timeout: still refused.
	tc.advance(DefaultCloseTimeout)
	tc.wantEvent(EventChannelClosed)
	require.Equal(t, ChannelAbandoned, tc.conn.ChannelState(2))
	_, err = tc.conn.Call(2, &frames.BasicQos{})
	require.ErrorIs(t, err, ErrChannelNotOpen)
	tc.wantIdle()
}

func TestCallRefuses(t *testing.T) {
	tests := []struct {
		ch uint16
		m  frames.Method
	}{
		{0, &frames.QueueDeclare{Queue: "q"}},
		{0, &frames.ConnectionClose{}},
		{1, &frames.ConnectionClose{}},
		{1, &frames.ConnectionCloseOK{}},
		{1, &frames.ConnectionUpdateSecret{NewSecret: "s"}},
		{1, &frames.ConnectionBlocked{}},
		{1, &frames.ConnectionStartOK{}},
		{1, &frames.ChannelOpen{}},
		{1, &frames.ChannelClose{}},
		{1, &frames.BasicPublish{}},
		{1, &frames.BasicDeliver{}},
		{1, &frames.BasicReturn{}},
		{1, &frames.BasicGetOK{}},
		{1, &frames.BasicGetEmpty{}},
		{1, &frames.QueueDeclareOK{}},
		{1, &frames.ExchangeDeclareOK{}},
		{1, &frames.BasicConsumeOK{}},
		{1, &frames.BasicQosOK{}},
		{1, &frames.BasicRecoverOK{}},
		{1, &frames.ChannelOpenOK{}},
		{1, &frames.ChannelCloseOK{}},
		{1, &frames.ChannelFlowOK{Active: true}},
		{1, &frames.BasicCancelOK{ConsumerTag: "c"}},
		{1, &frames.ConfirmSelectOK{}},
		{1, &frames.TxCommitOK{}},
	}
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	for _, tt := range tests {
		tok, err := tc.conn.Call(tt.ch, tt.m)
		require.ErrorIs(t, err, ErrNotAllowed, "%s on channel %d", tt.m.Key(), tt.ch)
		require.Zero(t, tok)
		tc.wantIdle()
	}
	require.Zero(t, tc.conn.channel(1).pending.len())

	// What a client may send is accepted.
	for _, m := range []frames.Method{&frames.ChannelFlow{Active: true}, &frames.TxSelect{}, &frames.BasicRecover{}} {
		tc.call(1, m)
	}
	require.Equal(t, 3, tc.conn.channel(1).pending.len())
}

func TestServerChannelCloseWithPendingRequests(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.openChannel(2)
		declare := tc.call(1, &frames.QueueDeclare{Queue: "missing", Passive: true})
		bind := tc.call(1, &frames.QueueBind{Queue: "missing", Exchange: "x"})
		text := "NOT_FOUND - no queue 'missing' in vhost '/'"
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 404, ReplyText: text, ClassID: 50, MethodID: 10})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		// The pending requests fail first, in order, with the channel's error.
		tc.wantFailed(1, declare, frames.MethodQueueDeclare, proto.NotFound)
		tc.wantFailed(1, bind, frames.MethodQueueBind, proto.NotFound)
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, uint16(1), e.Channel)
		var ce *proto.ChannelError
		require.ErrorAs(tc.t, e.Err, &ce)
		require.Equal(tc.t, proto.Reply{Code: proto.NotFound, Text: text, ClassID: 50, MethodID: 10}, ce.Reply)
		require.Equal(tc.t, uint16(1), ce.Channel)
		require.Equal(tc.t, proto.ByPeer, ce.Origin)
		require.ErrorIs(tc.t, e.Err, proto.NotFound)
		require.Zero(tc.t, e.Unconfirmed)
		require.Empty(tc.t, e.Publishes)
		tc.wantIdle()
		require.Equal(tc.t, ChannelFree, tc.conn.ChannelState(1))
		_, err := tc.conn.Call(1, &frames.BasicQos{})
		require.ErrorIs(tc.t, err, ErrChannelNotOpen)

		// The other channel is untouched; the id is reused and starts
		// with no pending requests.
		require.Equal(tc.t, ChannelOpen, tc.conn.ChannelState(2))
		tc.openChannel(1)
		tc.call(1, &frames.QueueDeclare{Queue: "q"})
		tc.reply(1, frames.MethodQueueDeclare, &frames.QueueDeclareOK{Queue: "q"})
		tc.wantIdle()
	})
}

func TestClientCloseChannel(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "c1", false)
		declare := tc.call(1, &frames.QueueDeclare{Queue: "q"})
		require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{Code: 200, Text: "bye"}))
		tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
		require.Equal(tc.t, ChannelClosing, tc.conn.ChannelState(1))
		// In flight: a delivery and the reply. Discarded, no violation.
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 1, RoutingKey: "q"}, &proto.Properties{ContentType: "text/plain"}, []byte("hello"))
		tc.writeMethod(1, &frames.QueueDeclareOK{Queue: "q"})
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
		tc.writeMethod(1, &frames.ChannelFlow{Active: false})
		tc.wantIdle()
		require.Equal(tc.t, StateOpen, tc.conn.State())
		tc.writeMethod(1, &frames.ChannelCloseOK{})
		// The request whose reply was discarded fails, cleanly closed.
		tc.wantFailed(1, declare, frames.MethodQueueDeclare, ErrClosed)
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, uint16(1), e.Channel)
		require.NoError(tc.t, e.Err)
		require.Equal(tc.t, ChannelFree, tc.conn.ChannelState(1))
		require.Empty(tc.t, tc.conn.Consumers(1))
		tc.wantIdle()
	})
}

func TestClientCloseChannelWhileOpening(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	id, err := tc.conn.OpenChannel()
	require.NoError(t, err)
	require.NoError(t, tc.conn.CloseChannel(id, proto.Reply{}))
	tc.wantMethod(id, &frames.ChannelOpen{})
	tc.wantMethod(id, &frames.ChannelClose{ReplyCode: 200})
	tc.writeMethod(id, &frames.ChannelOpenOK{})
	tc.wantIdle()
	tc.writeMethod(id, &frames.ChannelCloseOK{})
	e := tc.wantEvent(EventChannelClosed)
	require.NoError(t, e.Err)
	tc.wantIdle()
}

func TestClientCloseChannelCrossing(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
		tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
		// The server closes too before it sees ours: answer, keep waiting.
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406, ReplyText: "PRECONDITION_FAILED"})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		tc.wantIdle()
		require.Equal(tc.t, ChannelClosing, tc.conn.ChannelState(1))
		_, err := tc.conn.OpenChannel()
		require.NoError(tc.t, err)
		tc.wantMethod(2, &frames.ChannelOpen{}) // 1 is still taken
		tc.writeMethod(1, &frames.ChannelCloseOK{})
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, uint16(1), e.Channel)
		require.Equal(tc.t, ChannelFree, tc.conn.ChannelState(1))
		tc.wantIdle()
	})
}

func TestClientCloseChannelTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.CloseTimeout = 3 * time.Second
	testAllModes(t, cfg, func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		publishConfirmMode(tc, 1, 2)
		require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
		tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
		require.Equal(tc.t, tc.now.Add(3*time.Second), tc.conn.Deadline())
		tc.advance(3*time.Second - time.Millisecond)
		tc.wantIdle()
		tc.advance(time.Millisecond)
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, uint16(1), e.Channel)
		require.ErrorIs(tc.t, e.Err, ErrCloseTimeout)
		require.Equal(tc.t, 2, e.Unconfirmed)
		tc.wantIdle()
		require.Equal(tc.t, ChannelAbandoned, tc.conn.ChannelState(1))
		require.True(tc.t, tc.conn.Deadline().IsZero(), "no timer for an abandoned channel")

		// The id stays reserved.
		_, err := tc.conn.OpenChannel()
		require.NoError(tc.t, err)
		tc.wantMethod(2, &frames.ChannelOpen{})
		tc.writeMethod(2, &frames.ChannelOpenOK{})
		tc.wantEvent(EventChannelOpen)

		// Frames still arriving on it are discarded; the late close-ok
		// frees it without another event.
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 9}, nil, []byte("late"))
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
		tc.wantIdle()
		tc.writeMethod(1, &frames.ChannelCloseOK{})
		tc.wantIdle()
		require.Equal(tc.t, ChannelFree, tc.conn.ChannelState(1))
		tc.openChannel(1)
	})
}

func TestAbandonedChannelAtConnectionClose(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.openChannel(2)
	require.NoError(t, tc.conn.CloseChannel(1, proto.Reply{}))
	tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
	tc.advance(DefaultCloseTimeout)
	tc.wantEvent(EventChannelClosed)
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	// Only channel 2 is reported: channel 1 was reported already.
	e := tc.wantEvent(EventChannelClosed)
	require.Equal(t, uint16(2), e.Channel)
	tc.wantConnectionClose(200)
	tc.wantIdle()
	tc.writeMethod(0, &frames.ConnectionCloseOK{})
	require.NoError(t, tc.wantClosed())
}

func TestCommandEncodingErrors(t *testing.T) {
	long := strings.Repeat("x", 256) // over a short string's 255 bytes
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	publishConfirmMode(tc, 1, 1)

	_, err := tc.conn.Publish(1, &frames.BasicPublish{Exchange: long}, nil, []byte("x"), nil)
	require.Error(t, err)
	_, err = tc.conn.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, &proto.Properties{ContentType: long}, []byte("x"), nil)
	require.Error(t, err)
	for _, m := range []frames.Method{&frames.QueueDeclare{Queue: long}, &frames.BasicConsume{Queue: long}, &frames.BasicConsume{Queue: long, ConsumerTag: "c"}} {
		tok, err := tc.conn.Call(1, m)
		require.Error(t, err)
		require.Zero(t, tok)
	}
	tok, err := tc.conn.UpdateSecret("s", long)
	require.Error(t, err)
	require.Zero(t, tok)
	require.False(t, tc.conn.Consuming())
	tc.wantIdle()
	require.Zero(t, tc.conn.channel(1).pending.len(), "no reply expected for what was not sent")
	require.Empty(t, tc.conn.Consumers(1))
	require.Equal(t, 1, tc.conn.Unconfirmed(1), "no sequence number used")
	publish(tc, 1, 2, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))

	// Over-long close texts are cut, not refused.
	require.NoError(t, tc.conn.CloseChannel(1, proto.Reply{Text: long}))
	tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200, ReplyText: long[:255]})
}

// TestCloseTimerStartsAtClose: without heartbeats HandleTimeout may not
// have run for a long time; the close timeout still counts from the close.
func TestCloseTimerStartsAtClose(t *testing.T) {
	cfg := testConfig()
	cfg.CloseTimeout = 5 * time.Second
	tc := newOpenConn(t, cfg, 0)
	tc.openChannel(1)
	tc.advance(time.Hour) // no timer: HandleTimeout is not called
	require.NoError(t, tc.conn.CloseChannel(1, proto.Reply{}))
	dl := tc.conn.Deadline()
	require.False(t, dl.After(tc.now), "the machine asks for HandleTimeout now to arm the timer")
	tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
	require.Equal(t, tc.now.Add(5*time.Second), tc.conn.Deadline())
	tc.advance(5*time.Second - time.Millisecond)
	tc.wantIdle()
	tc.advance(time.Millisecond)
	require.ErrorIs(t, tc.wantEvent(EventChannelClosed).Err, ErrCloseTimeout)

	tc.advance(time.Hour)
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	tc.wantConnectionClose(200)
	tc.advance(5*time.Second - time.Millisecond)
	tc.wantIdle()
	tc.advance(time.Millisecond)
	require.ErrorIs(t, tc.wantClosed(), ErrCloseTimeout)
}

// TestClientCloseChannelMidContent: we close while a delivery's content is
// still arriving; its remaining frames are dropped and close-ok counts.
func TestClientCloseChannelMidContent(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "c", false)
		tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
		tc.writeRaw(headerFrame(tc.t, 1, 10, nil))
		tc.writeFrame(frames.FrameBody, 1, []byte("01234"))
		require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
		tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
		tc.writeFrame(frames.FrameBody, 1, []byte("56789"))
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 2}, nil, []byte("more"))
		tc.wantIdle()
		tc.writeMethod(1, &frames.ChannelCloseOK{})
		require.NoError(tc.t, tc.wantEvent(EventChannelClosed).Err)
		// Reopened, the id starts with no content in progress.
		tc.openChannel(1)
		tc.consume(1, "c", true)
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1}, nil, []byte("fresh"))
		require.Equal(tc.t, []byte("fresh"), tc.wantEvent(EventDelivery).Message.Body)
		tc.wantIdle()
	})
}
