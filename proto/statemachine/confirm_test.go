package statemachine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// publishConfirmMode puts channel ch in confirm mode and publishes n
// messages, asserting their sequence numbers (continuing any earlier).
func publishConfirmMode(tc *testConn, ch uint16, n int) {
	tc.t.Helper()
	if !tc.conn.Confirming(ch) {
		tc.call(ch, &frames.ConfirmSelect{})
		tc.reply(ch, frames.MethodConfirmSelect, &frames.ConfirmSelectOK{})
	}
	for range n {
		want := tc.conn.channel(ch).confirms.Next()
		publish(tc, ch, want, &frames.BasicPublish{RoutingKey: "q"}, []byte(fmt.Sprint("m", want)))
	}
}

// publish publishes body and asserts the returned sequence number and the
// frames written.
func publish(tc *testConn, ch uint16, wantSeq uint64, m *frames.BasicPublish, body []byte) {
	tc.t.Helper()
	publishRef(tc, ch, wantSeq, m, body, nil)
}

// publishRef is publish with a ref.
func publishRef(tc *testConn, ch uint16, wantSeq uint64, m *frames.BasicPublish, body []byte, ref any) {
	tc.t.Helper()
	seq, err := tc.conn.Publish(ch, m, nil, body, ref)
	require.NoError(tc.t, err)
	require.Equal(tc.t, wantSeq, seq, "publish sequence number")
	tc.wantContent(ch, m, nil, body)
}

func TestConfirmsPipelinedSelect(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		seq, err := tc.conn.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("before"), nil)
		require.NoError(tc.t, err)
		require.Zero(tc.t, seq, "no sequence number outside confirm mode")
		tc.wantContent(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("before"))
		require.False(tc.t, tc.conn.Confirming(1))

		tc.call(1, &frames.ConfirmSelect{})
		require.True(tc.t, tc.conn.Confirming(1))
		// Published before select-ok: the broker numbers it 1.
		publish(tc, 1, 1, &frames.BasicPublish{RoutingKey: "q"}, []byte("one"))
		tc.reply(1, frames.MethodConfirmSelect, &frames.ConfirmSelectOK{})
		for seq := uint64(2); seq <= 6; seq++ {
			publish(tc, 1, seq, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))
		}
		require.Equal(tc.t, 6, tc.conn.Unconfirmed(1))

		steps := []struct {
			m           frames.Method
			tag         uint64
			multiple    bool
			ack         bool
			settled     []uint64
			unconfirmed int
		}{
			{&frames.BasicAck{DeliveryTag: 1}, 1, false, true, []uint64{1}, 5},
			{&frames.BasicAck{DeliveryTag: 3, Multiple: true}, 3, true, true, []uint64{2, 3}, 3},
			{&frames.BasicNack{DeliveryTag: 5}, 5, false, false, []uint64{5}, 2}, // out of order
			{&frames.BasicAck{DeliveryTag: 4}, 4, false, true, []uint64{4}, 1},
			{&frames.BasicNack{DeliveryTag: 6, Multiple: true, Requeue: true}, 6, true, false, []uint64{6}, 0},
		}
		for _, s := range steps {
			tc.writeMethod(1, s.m)
			e := tc.wantEvent(EventConfirm)
			var pubs []Published
			for _, seq := range s.settled {
				pubs = append(pubs, Published{Seq: seq})
			}
			require.Equal(tc.t, Event{Kind: EventConfirm, Channel: 1, DeliveryTag: s.tag, Multiple: s.multiple, Ack: s.ack, Publishes: pubs}, e)
			require.Equal(tc.t, s.unconfirmed, tc.conn.Unconfirmed(1))
		}
		tc.wantIdle()
		// Numbering continues.
		publish(tc, 1, 7, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))
		publish(tc, 1, 8, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"))
		// Multiple with tag 0: everything outstanding.
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 0, Multiple: true})
		e := tc.wantEvent(EventConfirm)
		require.Equal(tc.t, uint64(8), e.DeliveryTag)
		require.True(tc.t, e.Multiple)
		require.Zero(tc.t, tc.conn.Unconfirmed(1))
	})
}

func TestConfirmNoWaitSelect(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.call(1, &frames.ConfirmSelect{NoWait: true})
	publish(tc, 1, 1, &frames.BasicPublish{RoutingKey: "q"}, nil)
	tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
	e := tc.wantEvent(EventConfirm)
	require.True(t, e.Ack)
}

func TestConfirmReturn(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		publishConfirmMode(tc, 1, 1)
		unroutable := &frames.BasicPublish{Exchange: "x", RoutingKey: "nowhere", Mandatory: true}
		publish(tc, 1, 2, unroutable, []byte("lost"))
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
		tc.wantEvent(EventConfirm)

		// The return is held until the ack of the same publish.
		props := &proto.Properties{ContentEncoding: "utf-8", Headers: proto.Table{{Name: "k", Value: proto.String("v")}}}
		tc.writeContentFrames(1, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", Exchange: "x", RoutingKey: "nowhere"}, props, []byte("lost"), 2)
		tc.wantIdle()
		// More input, compacting the buffers the return came in.
		tc.writeHeartbeat()
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 2})
		ret := tc.wantEvent(EventReturn)
		require.Equal(tc.t, uint16(1), ret.Channel)
		require.Equal(tc.t, uint64(2), ret.Message.PublishSeq)
		require.Equal(tc.t, proto.NoRoute, ret.Message.ReplyCode)
		require.Equal(tc.t, "NO_ROUTE", ret.Message.ReplyText)
		require.Equal(tc.t, "x", ret.Message.Exchange)
		require.Equal(tc.t, "nowhere", ret.Message.RoutingKey)
		require.Equal(tc.t, []byte("lost"), ret.Message.Body)
		got, err := ret.Message.Properties.Properties()
		require.NoError(tc.t, err)
		require.Equal(tc.t, "utf-8", got.ContentEncoding)
		require.Equal(tc.t, props.Headers, got.Headers)
		e := tc.wantEvent(EventConfirm)
		require.Equal(tc.t, uint64(2), e.DeliveryTag)
		tc.wantIdle()
	})
}

func TestConfirmReturnMultipleAck(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	publishConfirmMode(tc, 1, 2)
	lost := new(string)
	publishRef(tc, 1, 3, &frames.BasicPublish{RoutingKey: "nowhere", Mandatory: true}, []byte("lost"), lost)
	tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", RoutingKey: "nowhere"}, nil, []byte("lost"))
	tc.wantIdle()
	tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 3, Multiple: true})
	ret := tc.wantEvent(EventReturn)
	require.Equal(t, uint64(3), ret.Message.PublishSeq)
	require.Same(t, lost, ret.Message.PublishRef)
	require.Equal(t, []byte("lost"), ret.Message.Body)
	e := tc.wantEvent(EventConfirm)
	require.Equal(t, Event{Kind: EventConfirm, Channel: 1, DeliveryTag: 3, Multiple: true, Ack: true,
		Publishes: []Published{{Seq: 1}, {Seq: 2}, {Seq: 3, Ref: lost}}}, e)
	require.Zero(t, tc.conn.Unconfirmed(1))
	tc.wantIdle()
}

func TestReturnOutsideConfirmMode(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", RoutingKey: "nowhere"}, &proto.Properties{ContentType: "a/b"}, []byte("lost"))
	ret := tc.wantEvent(EventReturn)
	require.Zero(t, ret.Message.PublishSeq)
	require.Equal(t, []byte("lost"), ret.Message.Body)
	require.Equal(t, []byte("a/b"), ret.Message.Properties.ContentType)
	tc.wantIdle()
}

func TestConfirmUnconfirmedAtChannelClose(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		publishConfirmMode(tc, 1, 4)
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
		tc.wantEvent(EventConfirm)
		// A return waiting for its ack is delivered when the channel goes.
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, RoutingKey: "r"}, nil, []byte("b"))
		tc.wantIdle()
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406, ReplyText: "PRECONDITION_FAILED - x"})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		ret := tc.wantEvent(EventReturn)
		require.Zero(tc.t, ret.Message.PublishSeq, "its publish is unknown")
		require.Equal(tc.t, []byte("b"), ret.Message.Body)
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, 3, e.Unconfirmed)
		require.ErrorIs(tc.t, e.Err, proto.PreconditionFailed)
		require.Zero(tc.t, tc.conn.Unconfirmed(1))

		// Reopened: not in confirm mode, numbering starts again.
		tc.openChannel(1)
		require.False(tc.t, tc.conn.Confirming(1))
		publishConfirmMode(tc, 1, 1)
		require.Equal(tc.t, 1, tc.conn.Unconfirmed(1))
	})
}

func TestConfirmUnconfirmedAtConnectionLoss(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.openChannel(2)
	publishConfirmMode(tc, 1, 3)
	publishConfirmMode(tc, 2, 1)
	tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 2, Multiple: true})
	tc.wantEvent(EventConfirm)
	tc.writeEOF()
	e1 := tc.wantEvent(EventChannelClosed)
	e2 := tc.wantEvent(EventChannelClosed)
	require.Equal(t, []uint16{1, 2}, []uint16{e1.Channel, e2.Channel})
	require.Equal(t, []int{1, 1}, []int{e1.Unconfirmed, e2.Unconfirmed})
	require.ErrorIs(t, e1.Err, ErrConnectionLost)
	require.ErrorIs(t, e2.Err, ErrConnectionLost)
	e := tc.wantEvent(EventClosed)
	require.ErrorIs(t, e.Err, ErrConnectionLost)
	tc.wantIdle()
}

func TestConfirmViolations(t *testing.T) {
	tests := []struct {
		name    string
		confirm bool
		m       frames.Method
		code    proto.ReplyCode
	}{
		{"ack without confirm mode", false, &frames.BasicAck{DeliveryTag: 1}, proto.CommandInvalid},
		{"nack without confirm mode", false, &frames.BasicNack{DeliveryTag: 1}, proto.CommandInvalid},
		{"ack for a tag never published", true, &frames.BasicAck{DeliveryTag: 3}, proto.PreconditionFailed},
		{"multiple ack beyond the last publish", true, &frames.BasicAck{DeliveryTag: 9, Multiple: true}, proto.PreconditionFailed},
		{"nack for a tag never published", true, &frames.BasicNack{DeliveryTag: 3}, proto.PreconditionFailed},
		{"single ack for tag 0", true, &frames.BasicAck{DeliveryTag: 0}, proto.PreconditionFailed},
		{"ack for a tag already confirmed", true, &frames.BasicAck{DeliveryTag: 1}, proto.PreconditionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			if tt.confirm {
				publishConfirmMode(tc, 1, 2)
				tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
				tc.wantEvent(EventConfirm)
			}
			tc.writeMethod(1, tt.m)
			cl := tc.wantConnectionClose(tt.code)
			require.Equal(t, tt.m.Key().ClassID(), cl.ClassID)
			require.Equal(t, tt.m.Key().MethodID(), cl.MethodID)
			e := tc.wantEvent(EventChannelClosed)
			if tt.confirm {
				require.Equal(t, 1, e.Unconfirmed)
			}
			tc.wantIdle()
			tc.writeMethod(0, &frames.ConnectionCloseOK{})
			var ce *proto.ConnectionError
			require.ErrorAs(t, tc.wantClosed(), &ce)
			require.Equal(t, tt.code, ce.Code)
			require.Equal(t, proto.ByLocal, ce.Origin)
		})
	}
}

func TestOutstandingMultiple(t *testing.T) {
	var o Outstanding[string]
	require.Equal(t, uint64(1), o.Next())
	for i := uint64(1); i <= 5; i++ {
		require.True(t, o.Push(i, fmt.Sprint("v", i)))
	}
	require.Equal(t, 5, o.Len())
	require.Equal(t, uint64(6), o.Next())
	var got []string
	collect := func(seq uint64, v string) { got = append(got, fmt.Sprint(seq, v)) }
	require.Equal(t, 3, o.Resolve(3, true, collect))
	require.Equal(t, []string{"1v1", "2v2", "3v3"}, got)
	require.Equal(t, 2, o.Len())
	require.Zero(t, o.Resolve(2, true, collect), "already settled")
	require.Zero(t, o.Resolve(3, false, collect), "already settled")
	require.Zero(t, o.Resolve(9, false, collect), "never pushed")
	got = nil
	require.Equal(t, 2, o.Resolve(100, true, collect), "multiple beyond the last settles the rest")
	require.Equal(t, []string{"4v4", "5v5"}, got)
	require.Zero(t, o.Len())
	require.Equal(t, uint64(6), o.Next())
}

func TestOutstandingOutOfOrder(t *testing.T) {
	var o Outstanding[int]
	for i := uint64(1); i <= 40; i++ { // more than the first ring holds
		require.True(t, o.Push(i, int(i)))
	}
	var got []uint64
	collect := func(seq uint64, v int) {
		require.Equal(t, int(seq), v)
		got = append(got, seq)
	}
	for _, tag := range []uint64{5, 2, 40, 3} {
		require.Equal(t, 1, o.Resolve(tag, false, collect))
	}
	require.Zero(t, o.Resolve(5, false, collect))
	require.Equal(t, 36, o.Len())
	require.Equal(t, 1, o.Resolve(1, false, collect)) // 1..3 and 5 settled: the front moves to 4
	require.Equal(t, uint64(4), o.first)
	require.Equal(t, 35, o.Len())
	// Multiple counts only the unsettled.
	require.Equal(t, 2, o.Resolve(6, true, collect))
	require.Equal(t, []uint64{5, 2, 40, 3, 1, 4, 6}, got)
	// Push after wrap-around keeps order.
	for i := uint64(41); i <= 60; i++ {
		require.True(t, o.Push(i, int(i)))
	}
	got = nil
	require.Equal(t, 53, o.Drain(collect))
	require.Len(t, got, 53)
	require.Equal(t, uint64(7), got[0])
	require.Equal(t, uint64(39), got[32])
	require.Equal(t, uint64(41), got[33], "40 was settled")
	require.Equal(t, uint64(60), got[52])
	require.Zero(t, o.Len())
	require.Equal(t, uint64(61), o.Next(), "numbering continues after Drain")
	require.Zero(t, o.Drain(collect))
}

func TestOutstandingPushWrongSeq(t *testing.T) {
	var o Outstanding[struct{}]
	require.False(t, o.Push(0, struct{}{}))
	require.False(t, o.Push(2, struct{}{}))
	require.Zero(t, o.Len())
	require.True(t, o.Push(1, struct{}{}))
	require.False(t, o.Push(1, struct{}{}))
	require.False(t, o.Push(3, struct{}{}))
	require.True(t, o.Push(2, struct{}{}))
	require.Equal(t, 2, o.Len())
	require.Zero(t, o.Resolve(0, true, nil))
	require.Zero(t, o.Resolve(0, false, nil))
}

func TestOutstandingLarge(t *testing.T) {
	const n = 200000
	var o Outstanding[uint64]
	for i := uint64(1); i <= n; i++ {
		require.True(t, o.Push(i, i*2))
	}
	require.Equal(t, n, o.Len())
	next := uint64(1)
	require.Equal(t, n, o.Resolve(n, true, func(seq uint64, v uint64) {
		if seq != next || v != seq*2 {
			t.Fatalf("resolved %d (value %d), want %d", seq, v, next)
		}
		next++
	}))
	require.Equal(t, uint64(n+1), next)
	require.Zero(t, o.Len())
	require.Equal(t, uint64(n+1), o.Next())
}
