package statemachine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// TestConsuming follows Conn.Consuming through every way a consumer comes
// and goes; after each step it must agree with the consumers registered.
func TestConsuming(t *testing.T) {
	type step struct {
		do   func(tc *testConn)
		want bool
	}
	consume := func(ch uint16, tag string) func(tc *testConn) {
		return func(tc *testConn) { tc.consume(ch, tag, false) }
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"consume and cancel", []step{
			{consume(1, "a"), true},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "a"}) }, true}, // until cancel-ok
			{func(tc *testConn) {
				tc.reply(1, frames.MethodBasicCancel, &frames.BasicCancelOK{ConsumerTag: "a"})
			}, false},
		}},
		{"consume pending, then no-wait cancel", []step{
			{func(tc *testConn) { tc.call(1, &frames.BasicConsume{Queue: "q", ConsumerTag: "a"}) }, true},
			{func(tc *testConn) {
				tc.reply(1, frames.MethodBasicConsume, &frames.BasicConsumeOK{ConsumerTag: "a"})
			}, true},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "a", NoWait: true}) }, false},
		}},
		{"no-wait consume", []step{
			{func(tc *testConn) { tc.call(1, &frames.BasicConsume{Queue: "q", ConsumerTag: "a", NoWait: true}) }, true},
		}},
		{"cancel of an unknown tag", []step{
			{consume(1, "a"), true},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "zz", NoWait: true}) }, true},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "a", NoWait: true}) }, false},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "a", NoWait: true}) }, false},
		}},
		{"broker cancel", []step{
			{consume(1, "a"), true},
			{consume(2, "b"), true},
			{func(tc *testConn) {
				tc.writeMethod(1, &frames.BasicCancel{ConsumerTag: "a"})
				tc.wantMethod(1, &frames.BasicCancelOK{ConsumerTag: "a"})
				tc.wantEvent(EventConsumerCancelled)
			}, true},
			{func(tc *testConn) {
				tc.writeMethod(2, &frames.BasicCancel{ConsumerTag: "b", NoWait: true})
				tc.wantEvent(EventConsumerCancelled)
			}, false},
		}},
		{"broker cancel crossing ours", []step{
			{consume(1, "a"), true},
			{func(tc *testConn) { tc.call(1, &frames.BasicCancel{ConsumerTag: "a"}) }, true},
			{func(tc *testConn) {
				tc.writeMethod(1, &frames.BasicCancel{ConsumerTag: "a"})
				tc.wantMethod(1, &frames.BasicCancelOK{ConsumerTag: "a"})
				tc.wantEvent(EventConsumerCancelled)
			}, false},
			{func(tc *testConn) {
				tc.reply(1, frames.MethodBasicCancel, &frames.BasicCancelOK{ConsumerTag: "a"})
			}, false},
		}},
		{"refused consume closes the channel", []step{
			{func(tc *testConn) { tc.call(1, &frames.BasicConsume{Queue: "missing", ConsumerTag: "a"}) }, true},
			{func(tc *testConn) {
				tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 404})
				tc.wantMethod(1, &frames.ChannelCloseOK{})
				tc.wantEvent(EventReply)
				tc.wantEvent(EventChannelClosed)
			}, false},
		}},
		{"channel closed by us", []step{
			{consume(1, "a"), true},
			{consume(1, "b"), true},
			{consume(2, "c"), true},
			{func(tc *testConn) {
				require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
				tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
			}, true}, // deliveries may still come until close-ok
			{func(tc *testConn) {
				tc.writeMethod(1, &frames.ChannelCloseOK{})
				tc.wantEvent(EventChannelClosed)
			}, true}, // channel 2's consumer remains
			{func(tc *testConn) {
				tc.writeMethod(2, &frames.ChannelClose{ReplyCode: 406})
				tc.wantMethod(2, &frames.ChannelCloseOK{})
				tc.wantEvent(EventChannelClosed)
			}, false},
		}},
		{"connection lost", []step{
			{consume(1, "a"), true},
			{consume(2, "b"), true},
			{func(tc *testConn) { tc.writeEOF(); tc.wantClosed() }, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			tc.openChannel(2)
			require.False(t, tc.conn.Consuming())
			for i, s := range tt.steps {
				s.do(tc)
				require.Equal(t, s.want, tc.conn.Consuming(), "after step %d", i)
				registered := len(tc.conn.Consumers(1)) + len(tc.conn.Consumers(2))
				require.Equal(t, registered, tc.conn.consuming, "after step %d: the count disagrees with the consumers", i)
			}
		})
	}
}
