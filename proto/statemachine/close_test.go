package statemachine

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

func TestClientClose(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.openChannel(2)
		declare := tc.call(1, &frames.QueueDeclare{Queue: "q"})
		require.NoError(tc.t, tc.conn.Close(proto.Reply{Text: "bye"}))
		tc.wantMethod(0, &frames.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
		require.Equal(tc.t, StateClosing, tc.conn.State())
		require.Nil(tc.t, tc.conn.Err())
		// Every channel is reported closed at once, before EventClosed,
		// its pending requests failed just before it.
		tc.wantFailed(1, declare, frames.MethodQueueDeclare, ErrClosed)
		e1 := tc.wantEvent(EventChannelClosed)
		e2 := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, []uint16{1, 2}, []uint16{e1.Channel, e2.Channel})
		require.NoError(tc.t, e1.Err)
		require.NoError(tc.t, e2.Err)
		tc.wantIdle()

		// Commands fail now, writing nothing.
		_, err := tc.conn.OpenChannel()
		require.ErrorIs(tc.t, err, ErrClosed)
		tok, err := tc.conn.Call(1, &frames.BasicQos{})
		require.ErrorIs(tc.t, err, ErrClosed)
		require.Zero(tc.t, tok)
		require.ErrorIs(tc.t, tc.conn.Close(proto.Reply{}), ErrClosed)
		tok, err = tc.conn.UpdateSecret("s", "r")
		require.ErrorIs(tc.t, err, ErrClosed)
		require.Zero(tc.t, tok)

		// In flight: replies, deliveries, notifications. Ignored.
		tc.writeMethod(1, &frames.QueueDeclareOK{Queue: "q"})
		tc.writeContent(2, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1}, nil, []byte("late"))
		tc.writeMethod(0, &frames.ConnectionBlocked{Reason: "x"})
		tc.writeHeartbeat()
		tc.wantIdle()

		tc.writeMethod(0, &frames.ConnectionCloseOK{})
		e := tc.wantEvent(EventClosed)
		require.NoError(tc.t, e.Err)
		require.Equal(tc.t, StateClosed, tc.conn.State())
		require.True(tc.t, tc.conn.Deadline().IsZero())
		tc.wantIdle()
		require.ErrorIs(tc.t, tc.conn.Feed([]byte{1}), ErrClosed)
	})
}

func TestClientCloseReplyTruncated(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	require.NoError(t, tc.conn.Close(proto.Reply{Code: proto.ConnectionForced, Text: string(long), ClassID: 60, MethodID: 40}))
	tc.wantMethod(0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: string(long[:255]), ClassID: 60, MethodID: 40})
}

func TestClientCloseCrossing(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	tc.wantConnectionClose(200)
	tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - shutdown"})
	tc.wantMethod(0, &frames.ConnectionCloseOK{})
	require.NoError(t, tc.wantClosed(), "our clean close stays clean")
	tc.wantIdle()
}

func TestClientCloseEOF(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	tc.wantConnectionClose(200)
	tc.writeEOF()
	require.NoError(t, tc.wantClosed())
}

func TestClientCloseTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.CloseTimeout = 2 * time.Second
	testAllModes(t, cfg, func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.advance(time.Second)
		require.NoError(tc.t, tc.conn.Close(proto.Reply{}))
		tc.wantConnectionClose(200)
		tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, tc.now.Add(2*time.Second), tc.conn.Deadline())
		tc.advance(2*time.Second - time.Nanosecond)
		tc.wantIdle()
		tc.advance(time.Nanosecond)
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(tc.t, e.Err, ErrCloseTimeout)
		tc.wantIdle()
	})
}

func TestServerClose(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		publishConfirmMode(tc, 1, 2)
		text := "CONNECTION_FORCED - Closed via management plugin"
		tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: text})
		tc.wantMethod(0, &frames.ConnectionCloseOK{})
		ch := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, 2, ch.Unconfirmed)
		e := tc.wantEvent(EventClosed)
		require.Equal(tc.t, ch.Err, e.Err, "the channels end with the connection's error")
		var ce *proto.ConnectionError
		require.ErrorAs(tc.t, e.Err, &ce)
		require.Equal(tc.t, proto.Reply{Code: proto.ConnectionForced, Text: text}, ce.Reply)
		require.Equal(tc.t, proto.ByPeer, ce.Origin)
		require.ErrorIs(tc.t, e.Err, proto.ConnectionForced)
		require.True(tc.t, proto.IsRecoverable(e.Err))
		require.Equal(tc.t, StateClosed, tc.conn.State())
		require.Equal(tc.t, e.Err, tc.conn.Err())
		tc.wantIdle()
	})
}

func TestConnectionLost(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	declare := tc.call(1, &frames.QueueDeclare{Queue: "q"})
	tc.writeRaw(methodFrame(t, 1, &frames.QueueDeclareOK{Queue: "q"})[:5]) // a partial frame
	tc.writeEOF()
	tc.wantFailed(1, declare, frames.MethodQueueDeclare, ErrConnectionLost)
	e := tc.wantEvent(EventChannelClosed)
	require.ErrorIs(t, e.Err, ErrConnectionLost)
	require.ErrorIs(t, tc.wantClosed(), ErrConnectionLost)
	tc.wantIdle()
	tc.writeEOF() // again: nothing
	tc.wantIdle()
}

// violationCase sets up an open connection with channel 1 open (consumer
// "c" on it), feeds bad input, and expects connection.close with code.
type violationCase struct {
	name string
	feed func(tc *testConn)
	code proto.ReplyCode
	key  frames.MethodKey // the class and method the close names, if any
	// framing: the input cannot be parsed any more, so close-ok cannot be
	// read either.
	framing bool
}

func violationCases(t *testing.T) []violationCase {
	method := func(ch uint16, m frames.Method) []byte { return methodFrame(t, ch, m) }
	deliver := method(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
	header := func(size uint64) []byte { return headerFrame(t, 1, size, nil) }
	body := func(n int) []byte { return rawFrame(frames.FrameBody, 1, make([]byte, n)) }
	raw := func(bs ...[]byte) func(tc *testConn) {
		return func(tc *testConn) {
			for _, b := range bs {
				tc.writeRaw(b)
			}
		}
	}
	payload := func(class, method uint16, args ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, class)
		b = binary.BigEndian.AppendUint16(b, method)
		return append(b, args...)
	}
	badEnd := method(1, &frames.BasicQosOK{})
	badEnd[len(badEnd)-1] = 0x00
	return []violationCase{
		{name: "method on an unopened channel", feed: raw(method(7, &frames.ChannelOpenOK{})), code: proto.ChannelNotOpen},
		{name: "body on an unopened channel", feed: raw(rawFrame(frames.FrameBody, 9, []byte("x"))), code: proto.ChannelNotOpen},
		{name: "content header without a method", feed: raw(header(3)), code: proto.UnexpectedFrame},
		{name: "body without a header", feed: raw(body(3)), code: proto.UnexpectedFrame},
		{name: "body after the method, before the header", feed: raw(deliver, body(3)), code: proto.UnexpectedFrame},
		{name: "body longer than announced", feed: raw(deliver, header(3), body(5)), code: proto.FrameError},
		{name: "second body overruns", feed: raw(deliver, header(5), body(3), body(3)), code: proto.FrameError},
		{name: "method while the header is awaited", feed: raw(deliver, method(1, &frames.BasicQosOK{})), code: proto.UnexpectedFrame},
		{name: "method while the body is incomplete", feed: raw(deliver, header(5), body(2), method(1, &frames.ChannelClose{ReplyCode: 200})), code: proto.UnexpectedFrame},
		{name: "second header", feed: raw(deliver, header(5), header(5)), code: proto.UnexpectedFrame},
		{name: "content header on channel 0", feed: raw(headerFrame(t, 0, 1, nil)), code: proto.UnexpectedFrame},
		{name: "malformed content header", feed: raw(deliver, rawFrame(frames.FrameHeader, 1, []byte{0, 60, 0})), code: proto.FrameError},
		{name: "content header of class queue", feed: raw(deliver, rawFrame(frames.FrameHeader, 1, []byte{0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0})), code: proto.FrameError},
		{name: "reply with nothing pending", feed: raw(method(1, &frames.QueueDeclareOK{Queue: "q"})), code: proto.CommandInvalid, key: frames.MethodQueueDeclareOK},
		{name: "connection.start when open", feed: raw(method(0, serverStart("PLAIN"))), code: proto.CommandInvalid, key: frames.MethodConnectionStart},
		{name: "connection.tune when open", feed: raw(method(0, serverTune())), code: proto.CommandInvalid, key: frames.MethodConnectionTune},
		{name: "connection.close-ok when open", feed: raw(method(0, &frames.ConnectionCloseOK{})), code: proto.CommandInvalid, key: frames.MethodConnectionCloseOK},
		{name: "channel.close-ok on an open channel", feed: raw(method(1, &frames.ChannelCloseOK{})), code: proto.CommandInvalid, key: frames.MethodChannelCloseOK},
		{name: "channel.open-ok on an open channel", feed: raw(method(1, &frames.ChannelOpenOK{})), code: proto.CommandInvalid, key: frames.MethodChannelOpenOK},
		{name: "client-only method from the server", feed: raw(method(1, &frames.QueueDeclare{Queue: "q"})), code: proto.CommandInvalid, key: frames.MethodQueueDeclare},
		{name: "update-secret-ok unasked", feed: raw(method(0, &frames.ConnectionUpdateSecretOK{})), code: proto.CommandInvalid, key: frames.MethodConnectionUpdateSecretOK},
		{name: "basic.ack without confirm mode", feed: raw(method(1, &frames.BasicAck{DeliveryTag: 1})), code: proto.CommandInvalid, key: frames.MethodBasicAck},
		{name: "unknown class", feed: raw(rawFrame(frames.FrameMethod, 1, payload(99, 10))), code: proto.NotImplemented, key: frames.Key(99, 10)},
		{name: "unknown class on channel 0", feed: raw(rawFrame(frames.FrameMethod, 0, payload(99, 10))), code: proto.NotImplemented, key: frames.Key(99, 10)},
		{name: "unknown method", feed: raw(rawFrame(frames.FrameMethod, 1, payload(60, 999))), code: proto.CommandInvalid, key: frames.Key(60, 999)},
		{name: "malformed arguments", feed: raw(rawFrame(frames.FrameMethod, 1, payload(60, 11, 0xFF))), code: proto.SyntaxError, key: frames.MethodBasicQosOK},
		{name: "method frame too short", feed: raw(rawFrame(frames.FrameMethod, 1, []byte{0, 60})), code: proto.FrameError},
		{name: "frame over frame_max", feed: raw(deliver, header(10000), body(4096-frames.FrameOverhead+1)), code: proto.FrameError, framing: true},
		{name: "bad frame end", feed: raw(badEnd), code: proto.FrameError, framing: true},
		{name: "unknown frame type", feed: raw(rawFrame(5, 1, []byte("x"))), code: proto.FrameError, framing: true},
		{name: "heartbeat on a channel", feed: raw(rawFrame(frames.FrameHeartbeat, 1, nil)), code: proto.FrameError, framing: true},
		{name: "heartbeat with a payload", feed: raw(rawFrame(frames.FrameHeartbeat, 0, []byte{1})), code: proto.FrameError, framing: true},
	}
}

func TestProtocolViolations(t *testing.T) {
	for _, tt := range violationCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			var logs [][]Event
			for _, mode := range feedModes {
				tc := newTestConn(t, testConfig(), withFeedMode(mode))
				hs := defaultHandshake()
				hs.tune.FrameMax = 4096
				tc.handshakeWith(hs)
				tc.openChannel(1)
				tc.consume(1, "c", false)
				tt.feed(tc)
				cl := tc.wantConnectionClose(tt.code)
				require.NotEmpty(t, cl.ReplyText)
				require.Equal(t, tt.key.ClassID(), cl.ClassID, "class in connection.close %q", cl.ReplyText)
				require.Equal(t, tt.key.MethodID(), cl.MethodID, "method in connection.close %q", cl.ReplyText)
				require.Equal(t, StateClosing, tc.conn.State())
				var ce *proto.ConnectionError
				require.ErrorAs(t, tc.conn.Err(), &ce)
				require.Equal(t, proto.Reply{Code: tt.code, Text: cl.ReplyText, ClassID: cl.ClassID, MethodID: cl.MethodID}, ce.Reply)
				require.Equal(t, proto.ByLocal, ce.Origin)
				require.ErrorIs(t, tc.conn.Err(), tt.code)
				e := tc.wantEvent(EventChannelClosed)
				require.Equal(t, tc.conn.Err(), e.Err)
				tc.wantIdle()

				// Everything but close-ok is ignored now.
				tc.writeMethod(0, &frames.ConnectionBlocked{Reason: "x"})
				tc.writeMethod(1, &frames.QueueDeclareOK{Queue: "q"})
				tc.writeMethod(3, &frames.ChannelOpenOK{})
				tc.writeHeartbeat()
				tc.wantIdle()
				if tt.framing {
					// The stream cannot be parsed: close-ok cannot be seen,
					// the server's EOF or the timeout ends it.
					tc.writeMethod(0, &frames.ConnectionCloseOK{})
					tc.wantIdle()
					require.Equal(t, StateClosing, tc.conn.State())
					tc.advance(DefaultCloseTimeout)
				} else {
					tc.writeMethod(0, &frames.ConnectionCloseOK{})
				}
				err := tc.wantClosed()
				require.Equal(t, ce, err, "EventClosed carries the violation")
				tc.wantIdle()
				logs = append(logs, tc.log)
			}
			for i := 1; i < len(logs); i++ {
				require.Equal(t, logs[0], logs[i], "whole vs %s", feedModes[i])
			}
		})
	}
}

func TestViolationThenEOF(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.writeRaw(rawFrame(5, 0, nil))
	tc.wantConnectionClose(proto.FrameError)
	tc.writeEOF()
	var ce *proto.ConnectionError
	require.ErrorAs(t, tc.wantClosed(), &ce)
	require.Equal(t, proto.FrameError, ce.Code)
}

func TestViolationThenServerClose(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.writeMethod(0, &frames.ConnectionUnblocked{})
	tc.writeMethod(0, &frames.ConnectionStart{})
	tc.wantEvent(EventUnblocked)
	tc.wantConnectionClose(proto.CommandInvalid)
	// The server's own close crosses ours: answered, and our reason stays.
	tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 505, ReplyText: "UNEXPECTED_FRAME"})
	tc.wantMethod(0, &frames.ConnectionCloseOK{})
	var ce *proto.ConnectionError
	require.ErrorAs(t, tc.wantClosed(), &ce)
	require.Equal(t, proto.CommandInvalid, ce.Code)
	require.Equal(t, proto.ByLocal, ce.Origin)
}

func TestFrameMaxBoundary(t *testing.T) {
	tc := newTestConn(t, testConfig())
	hs := defaultHandshake()
	hs.tune.FrameMax = 4096
	tc.handshakeWith(hs)
	tc.openChannel(1)
	tc.consume(1, "c", true)
	body := make([]byte, 4096-frames.FrameOverhead) // exactly frame_max
	for i := range body {
		body[i] = byte(i)
	}
	tc.writeMethod(1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
	tc.writeRaw(headerFrame(t, 1, uint64(len(body)), nil))
	tc.writeFrame(frames.FrameBody, 1, body)
	e := tc.wantEvent(EventDelivery)
	require.Equal(t, body, e.Message.Body)
	tc.wantIdle()
}

// TestEOFAfterBufferedFrames: the peer's last frames and its EOF can come
// from one read (io.Reader may return n > 0 with io.EOF), so a driver
// calls Feed and FeedEOF before it drains NextEvent, as the calling order
// allows. The frames already fed must still count.
func TestEOFAfterBufferedFrames(t *testing.T) {
	t.Run("connection.close then EOF", func(t *testing.T) {
		tc := newOpenConn(t, testConfig(), 0)
		tc.openChannel(1)
		require.NoError(t, tc.conn.Feed(methodFrame(t, 0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - bye"})))
		tc.conn.FeedEOF()
		tc.pump()
		tc.wantMethod(0, &frames.ConnectionCloseOK{})
		tc.wantEvent(EventChannelClosed)
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, proto.ConnectionForced, "the broker's reason, not a lost connection")
		require.NotErrorIs(t, e.Err, ErrConnectionLost)
		tc.wantIdle()
	})
	t.Run("refused login then EOF", func(t *testing.T) {
		tc := newTestConn(t, testConfig())
		tc.serverStartAndWantStartOK("PLAIN")
		require.NoError(t, tc.conn.Feed(methodFrame(t, 0, &frames.ConnectionClose{ReplyCode: 403, ReplyText: "ACCESS_REFUSED - Login was refused"})))
		tc.conn.FeedEOF()
		tc.pump()
		tc.wantMethod(0, &frames.ConnectionCloseOK{})
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, proto.AccessRefused)
		tc.wantIdle()
	})
	t.Run("deliveries then EOF", func(t *testing.T) {
		tc := newOpenConn(t, testConfig(), 0)
		tc.openChannel(1)
		tc.consume(1, "c", true)
		var b []byte
		for i := range 3 {
			m, err := frames.AppendMessage(nil, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: uint64(i + 1)}, nil, bodyOf(100), 4096)
			require.NoError(t, err)
			b = append(b, m...)
		}
		b = append(b, methodFrame(t, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 4})...) // no content: cut off
		require.NoError(t, tc.conn.Feed(b))
		tc.conn.FeedEOF()
		tc.pump()
		for i := range 3 {
			e := tc.wantEvent(EventDelivery)
			require.Equal(t, uint64(i+1), e.Message.DeliveryTag)
			require.Equal(t, bodyOf(100), e.Message.Body)
		}
		require.ErrorIs(t, tc.wantEvent(EventChannelClosed).Err, ErrConnectionLost)
		require.ErrorIs(t, tc.wantEvent(EventClosed).Err, ErrConnectionLost)
		tc.wantIdle()
	})
	t.Run("framing violation then EOF", func(t *testing.T) {
		tc := newOpenConn(t, testConfig(), 0)
		tc.writeRaw(rawFrame(5, 0, nil)) // a framing violation
		tc.wantConnectionClose(proto.FrameError)
		tc.conn.FeedEOF()
		var ce *proto.ConnectionError
		require.ErrorAs(t, tc.wantClosed(), &ce)
		require.Equal(t, proto.FrameError, ce.Code)
	})
}
