package statemachine

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

func fullProperties() *proto.Properties {
	return &proto.Properties{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers: proto.Table{
			{Name: "str", Value: proto.String("text")},
			{Name: "int", Value: proto.Int32(42)},
			{Name: "nested", Value: proto.TableValue(proto.Table{{Name: "x", Value: proto.String("y")}})},
		},
		DeliveryMode:  proto.Persistent,
		Priority:      5,
		CorrelationID: "corr-1",
		ReplyTo:       "reply.q",
		Expiration:    "60000",
		MessageID:     "mid-1",
		Timestamp:     time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Type:          "kind",
		UserID:        "guest",
		AppID:         "capture",
	}
}

func requireProperties(t testing.TB, want *proto.Properties, got proto.PropertiesView) {
	t.Helper()
	p, err := got.Properties()
	require.NoError(t, err)
	w := *want
	w.Flags = w.PresentFlags()
	require.Equal(t, w, p)
}

func bodyOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestDelivery(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "c1", false)
		props := fullProperties()
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 7, Redelivered: true, Exchange: "ex", RoutingKey: "rk"}, props, []byte("héllo wörld"))
		e := tc.wantEvent(EventDelivery)
		require.Equal(tc.t, uint16(1), e.Channel)
		m := e.Message
		require.Equal(tc.t, "c1", m.ConsumerTag)
		require.Equal(tc.t, uint64(7), m.DeliveryTag)
		require.True(tc.t, m.Redelivered)
		require.Equal(tc.t, "ex", m.Exchange)
		require.Equal(tc.t, "rk", m.RoutingKey)
		require.Equal(tc.t, uint64(len("héllo wörld")), m.BodySize)
		require.Equal(tc.t, []byte("héllo wörld"), m.Body)
		requireProperties(tc.t, props, m.Properties)
		tc.wantIdle()
	})
}

func TestDeliveryMultiFrameBody(t *testing.T) {
	body := bodyOf(1000)
	props := fullProperties()
	for _, chunk := range []int{1, 7, 100, 999} {
		t.Run("", func(t *testing.T) {
			testAllModes(t, testConfig(), func(tc *testConn) {
				tc.handshake()
				tc.openChannel(1)
				tc.consume(1, "c1", true)
				// Every frame in its own write: the machine compacts its
				// input between the header and the body frames.
				tc.writeContentFrames(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 1}, props, body, chunk)
				e := tc.wantEvent(EventDelivery)
				require.Equal(tc.t, body, e.Message.Body)
				requireProperties(tc.t, props, e.Message.Properties)
				// And a second one, reusing the buffers.
				tc.writeContentFrames(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 2}, nil, body[:500], chunk)
				e = tc.wantEvent(EventDelivery)
				require.Equal(tc.t, body[:500], e.Message.Body)
				require.Zero(tc.t, e.Message.Properties.Flags)
				tc.wantIdle()
			})
		})
	}
}

// TestHeaderSurvivesCompaction feeds the header, then body frames whose
// bytes land where the header was: the properties must not change.
func TestHeaderSurvivesCompaction(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	props := fullProperties()
	tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
	tc.writeRaw(headerFrame(t, 1, 600, props))
	filler := bytes.Repeat([]byte{0xEE}, 300)
	tc.writeRaw(rawFrame(frames.FrameBody, 1, filler))
	tc.writeRaw(rawFrame(frames.FrameBody, 1, filler))
	e := tc.wantEvent(EventDelivery)
	require.Equal(t, append(bytes.Clone(filler), filler...), e.Message.Body)
	requireProperties(t, props, e.Message.Properties)
}

func TestEventValidUntilNextFeed(t *testing.T) {
	// Use the machine directly: the event's slices must stay valid until
	// the next Feed, even though the input that carried them was parsed.
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	c := tc.conn
	b, err := frames.AppendMessage(nil, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1}, &proto.Properties{ContentType: "text/plain"}, []byte("first"), 0)
	require.NoError(t, err)
	b, err = frames.AppendMessage(b, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 2}, &proto.Properties{ContentType: "application/x"}, []byte("second"), 0)
	require.NoError(t, err)
	require.NoError(t, c.Feed(b))
	e1 := c.NextEvent()
	require.Equal(t, EventDelivery, e1.Kind)
	require.Equal(t, "first", string(e1.Message.Body))
	require.Equal(t, "text/plain", string(e1.Message.Properties.ContentType))
	e2 := c.NextEvent()
	require.Equal(t, EventDelivery, e2.Kind)
	require.Equal(t, "second", string(e2.Message.Body))
	require.Equal(t, "application/x", string(e2.Message.Properties.ContentType))
	require.Equal(t, EventNone, c.NextEvent().Kind)
}

func TestZeroLengthBody(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "c", true)
		tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
		tc.wantIdle()
		tc.writeRaw(headerFrame(tc.t, 1, 0, &proto.Properties{ContentType: "x"}))
		e := tc.wantEvent(EventDelivery)
		require.Empty(tc.t, e.Message.Body)
		require.Zero(tc.t, e.Message.BodySize)
		require.Equal(tc.t, []byte("x"), e.Message.Properties.ContentType)
		// Next method straight after: no body frame was expected.
		tc.call(1, &frames.BasicQos{PrefetchCount: 1})
		tc.reply(1, frames.MethodBasicQos, &frames.BasicQosOK{})
	})
}

func TestInterleavedContent(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.openChannel(2)
		b1, b2 := bodyOf(50), bytes.Repeat([]byte("Z"), 30)
		tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "a", DeliveryTag: 1})
		tc.writeMethod(2, &frames.BasicDeliver{ConsumerTag: "b", DeliveryTag: 1})
		tc.writeRaw(headerFrame(tc.t, 2, uint64(len(b2)), &proto.Properties{ContentType: "two"}))
		tc.writeRaw(headerFrame(tc.t, 1, uint64(len(b1)), &proto.Properties{ContentType: "one"}))
		tc.writeFrame(frames.FrameBody, 1, b1[:20])
		tc.writeFrame(frames.FrameBody, 2, b2[:10])
		tc.writeFrame(frames.FrameBody, 1, b1[20:])
		e := tc.wantEvent(EventDelivery)
		require.Equal(tc.t, uint16(1), e.Channel)
		require.Equal(tc.t, "a", e.Message.ConsumerTag)
		require.Equal(tc.t, b1, e.Message.Body)
		require.Equal(tc.t, []byte("one"), e.Message.Properties.ContentType)
		tc.wantIdle()
		tc.writeFrame(frames.FrameBody, 2, b2[10:])
		e = tc.wantEvent(EventDelivery)
		require.Equal(tc.t, uint16(2), e.Channel)
		require.Equal(tc.t, "b", e.Message.ConsumerTag)
		require.Equal(tc.t, b2, e.Message.Body)
		require.Equal(tc.t, []byte("two"), e.Message.Properties.ContentType)
		tc.wantIdle()
	})
}

func TestMaxMessageSize(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 100
	testAllModes(t, cfg, func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "manual", false)
		tc.consume(1, "auto", true)
		big := bodyOf(150)

		// A manual-ack delivery is rejected without requeue.
		tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "manual", DeliveryTag: 1, Exchange: "x", RoutingKey: "k"})
		tc.writeRaw(headerFrame(tc.t, 1, uint64(len(big)), fullProperties()))
		tc.wantMethod(1, &frames.BasicReject{DeliveryTag: 1, Requeue: false})
		e := tc.wantEvent(EventMessageTooLarge)
		require.Equal(tc.t, uint16(1), e.Channel)
		require.Equal(tc.t, Message{ConsumerTag: "manual", DeliveryTag: 1, Exchange: "x", RoutingKey: "k", BodySize: 150}, e.Message)
		for _, part := range [][]byte{big[:60], big[60:120], big[120:]} {
			tc.writeFrame(frames.FrameBody, 1, part)
		}
		tc.wantIdle()

		// A no-ack delivery is only reported.
		tc.writeContentFrames(1, &frames.BasicDeliver{ConsumerTag: "auto", DeliveryTag: 2}, nil, big, 40)
		e = tc.wantEvent(EventMessageTooLarge)
		require.Equal(tc.t, "auto", e.Message.ConsumerTag)
		tc.wantIdle()

		// Exactly the limit passes.
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "manual", DeliveryTag: 3}, nil, big[:100])
		e = tc.wantEvent(EventDelivery)
		require.Equal(tc.t, big[:100], e.Message.Body)

		// get-ok: rejected unless no-ack; the basic.get fails.
		get := tc.call(1, &frames.BasicGet{Queue: "q"})
		tc.writeContent(1, &frames.BasicGetOK{DeliveryTag: 4, MessageCount: 2}, nil, big)
		tc.wantMethod(1, &frames.BasicReject{DeliveryTag: 4})
		e = tc.wantEvent(EventMessageTooLarge)
		require.Equal(tc.t, frames.MethodBasicGet, e.Request)
		require.Equal(tc.t, uint64(4), e.Message.DeliveryTag)
		require.Equal(tc.t, uint32(2), e.Message.MessageCount)
		r := tc.wantEvent(EventReply)
		require.Equal(tc.t, get, r.Token)
		require.Equal(tc.t, frames.MethodBasicGet, r.Request)
		require.Nil(tc.t, r.Method)
		require.ErrorIs(tc.t, r.Err, ErrMessageTooLarge)
		require.Equal(tc.t, e.Message, r.Message)
		get = tc.call(1, &frames.BasicGet{Queue: "q", NoAck: true})
		tc.writeContent(1, &frames.BasicGetOK{DeliveryTag: 5}, nil, big)
		e = tc.wantEvent(EventMessageTooLarge)
		require.Equal(tc.t, frames.MethodBasicGet, e.Request)
		r = tc.wantEvent(EventReply)
		require.Equal(tc.t, get, r.Token)
		require.ErrorIs(tc.t, r.Err, ErrMessageTooLarge)
		tc.wantIdle()

		// A return is never rejected.
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312}, nil, big)
		e = tc.wantEvent(EventMessageTooLarge)
		require.Equal(tc.t, proto.NoRoute, e.Message.ReplyCode)
		tc.wantIdle()

		// The channel works on.
		tc.call(1, &frames.BasicQos{PrefetchCount: 1})
		tc.reply(1, frames.MethodBasicQos, &frames.BasicQosOK{})
		tc.wantIdle()
	})
}

func TestMaxMessageSizeHugeAnnouncement(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "unknown", DeliveryTag: 1})
	tc.writeRaw(headerFrame(t, 1, 1<<62, nil))
	// An unknown consumer's delivery is rejected: it may need an ack.
	tc.wantMethod(1, &frames.BasicReject{DeliveryTag: 1})
	e := tc.wantEvent(EventMessageTooLarge)
	require.Equal(t, uint64(1<<62), e.Message.BodySize)
	tc.writeFrame(frames.FrameBody, 1, bodyOf(1000))
	tc.wantIdle()
}

func TestDeliveriesAfterCancelBeforeCancelOK(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.consume(1, "c1", false)
		tc.call(1, &frames.BasicCancel{ConsumerTag: "c1"})
		require.Equal(tc.t, []string{"c1"}, tc.conn.Consumers(1))
		tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 1}, nil, []byte("in flight"))
		e := tc.wantEvent(EventDelivery)
		require.Equal(tc.t, "c1", e.Message.ConsumerTag)
		require.Equal(tc.t, []byte("in flight"), e.Message.Body)
		tc.reply(1, frames.MethodBasicCancel, &frames.BasicCancelOK{ConsumerTag: "c1"})
		require.Empty(tc.t, tc.conn.Consumers(1))
		tc.wantIdle()
	})
}

func TestCancelNoWaitRemovesConsumer(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.consume(1, "c1", false)
	tc.call(1, &frames.BasicCancel{ConsumerTag: "c1", NoWait: true})
	require.Empty(t, tc.conn.Consumers(1))
	tc.wantIdle()
}

func TestConsumerTags(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.openChannel(2)
	seen := map[string]bool{}
	for _, ch := range []uint16{1, 1, 2, 1} {
		m := &frames.BasicConsume{Queue: "q"}
		tok, err := tc.conn.Call(ch, m)
		require.NoError(t, err)
		tc.track(ch, tok)
		require.NotEmpty(t, m.ConsumerTag, "a tag is generated and stored in m")
		require.False(t, seen[m.ConsumerTag], "tag %q generated twice", m.ConsumerTag)
		seen[m.ConsumerTag] = true
		tc.wantMethod(ch, m)
	}
	// A tag in use is refused, writing nothing.
	tags := tc.conn.Consumers(1)
	require.Len(t, tags, 3)
	tok, err := tc.conn.Call(1, &frames.BasicConsume{Queue: "q", ConsumerTag: tags[0]})
	require.ErrorIs(t, err, ErrConsumerTagInUse)
	require.Zero(t, tok)
	tc.wantIdle()
	// The same tag on another channel is fine.
	tc.call(2, &frames.BasicConsume{Queue: "q", ConsumerTag: tags[0]})
}

func TestGeneratedConsumerTagAvoidsUserTags(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	// The user happens to pick the tag the machine would generate next.
	probe := &frames.BasicConsume{Queue: "q"}
	_, err := tc.conn.Call(1, probe)
	require.NoError(t, err)
	tc.wantMethod(1, probe)
	next := strings.TrimSuffix(probe.ConsumerTag, "1") + "2"
	tc.call(1, &frames.BasicConsume{Queue: "q", ConsumerTag: next})
	m := &frames.BasicConsume{Queue: "q"}
	_, err = tc.conn.Call(1, m)
	require.NoError(t, err, "a generated tag must not collide")
	require.NotEqual(t, next, m.ConsumerTag)
	require.NotEqual(t, probe.ConsumerTag, m.ConsumerTag)
	tc.wantMethod(1, m)
	require.Len(t, tc.conn.Consumers(1), 3)
}

func TestNoAckConsumers(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.openChannel(2)
	require.Empty(t, tc.conn.Consumers(1))
	require.Empty(t, tc.conn.NoAckConsumers(1))
	tc.consume(1, "a", true)
	tc.consume(1, "b", false)
	tc.consume(1, "c", true)
	tc.consume(2, "d", true)
	tc.call(1, &frames.BasicConsume{Queue: "q", ConsumerTag: "e", NoAck: true, NoWait: true})
	sorted := func(s []string) []string { slices.Sort(s); return s }
	require.Equal(t, []string{"a", "b", "c", "e"}, sorted(tc.conn.Consumers(1)))
	require.Equal(t, []string{"a", "c", "e"}, sorted(tc.conn.NoAckConsumers(1)))
	require.Equal(t, []string{"d"}, sorted(tc.conn.NoAckConsumers(2)))
	require.Empty(t, tc.conn.NoAckConsumers(3))
	tc.call(1, &frames.BasicCancel{ConsumerTag: "a"})
	tc.reply(1, frames.MethodBasicCancel, &frames.BasicCancelOK{ConsumerTag: "a"})
	require.Equal(t, []string{"c", "e"}, sorted(tc.conn.NoAckConsumers(1)))
}

func TestGet(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.call(1, &frames.BasicGet{Queue: "q"})
		tc.call(1, &frames.BasicGet{Queue: "q", NoAck: true})
		tc.call(1, &frames.BasicGet{Queue: "q"})
		props := fullProperties()
		tc.writeContentFrames(1, &frames.BasicGetOK{DeliveryTag: 1, Redelivered: true, Exchange: "x", RoutingKey: "k", MessageCount: 6}, props, []byte("héllo wörld"), 4)
		e := tc.wantEvent(EventReply)
		require.Equal(tc.t, frames.MethodBasicGet, e.Request)
		require.Equal(tc.t, &frames.BasicGetOK{DeliveryTag: 1, Redelivered: true, Exchange: "x", RoutingKey: "k", MessageCount: 6}, e.Method)
		require.Equal(tc.t, []byte("héllo wörld"), e.Message.Body)
		require.Equal(tc.t, uint64(1), e.Message.DeliveryTag)
		require.Equal(tc.t, uint32(6), e.Message.MessageCount)
		requireProperties(tc.t, props, e.Message.Properties)
		tc.writeContent(1, &frames.BasicGetOK{DeliveryTag: 2, MessageCount: 5}, nil, nil)
		e = tc.wantEvent(EventReply)
		require.IsType(tc.t, &frames.BasicGetOK{}, e.Method)
		require.Empty(tc.t, e.Message.Body)
		e = tc.reply(1, frames.MethodBasicGet, &frames.BasicGetEmpty{})
		require.Empty(tc.t, e.Message.Body)
		tc.wantIdle()
	})
}

// A body assembled from several frames is grown by doubling up to its
// announced size: the buffer never holds more than twice what has
// arrived, and a body over keepBodyBufMax goes with its event
// (BodyOwned), so that the caller keeps it without a copy; a smaller one
// stays the channel's for the next message.
func TestBodyAssemblyGrowth(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tc.consume(1, "c", true)
	chunk := 4096 - 8

	// A large announcement that stalls costs what arrived.
	tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
	tc.writeRaw(headerFrame(t, 1, 100<<20, nil))
	for range 3 {
		tc.writeFrame(frames.FrameBody, 1, bodyOf(chunk))
	}
	a := tc.conn.channels[1].asm
	require.LessOrEqual(t, cap(a.bodyBuf), 2*3*chunk, "at most twice what arrived")
	tc.writeEOF()

	for _, tt := range []struct {
		size  int
		owned bool
	}{{keepBodyBufMax / 2, false}, {3 * keepBodyBufMax, true}} {
		tc := newOpenConn(t, testConfig(), 0)
		tc.openChannel(1)
		tc.consume(1, "c", true)
		body := bodyOf(tt.size)
		tc.writeContentFrames(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1}, nil, body, chunk)
		e := tc.wantEvent(EventDelivery)
		require.Equal(t, body, e.Message.Body)
		require.Equal(t, tt.owned, e.Message.BodyOwned, "size %d", tt.size)
		kept := tc.conn.channels[1].asm.bodyBuf
		if tt.owned {
			require.Nil(t, kept, "handed over, not kept")
		} else {
			require.Equal(t, tt.size, cap(kept), "kept for the next message, grown to exactly the announced size")
		}
	}
}
