package statemachine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// TestTokensMatchReplies: requests pending on two channels at once get
// distinct non-zero tokens, and each reply echoes the token of the request
// it answers, in request order per channel, whatever order the channels
// answer in.
func TestTokensMatchReplies(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.openChannel(2)
		type req struct {
			ch    uint16
			m     frames.Method
			reply frames.Method
		}
		reqs := []req{
			{1, &frames.QueueDeclare{Queue: "a"}, &frames.QueueDeclareOK{Queue: "a"}},
			{2, &frames.QueueDeclare{Queue: "b"}, &frames.QueueDeclareOK{Queue: "b", MessageCount: 1}},
			{1, &frames.QueueBind{Queue: "a", Exchange: "x"}, &frames.QueueBindOK{}},
			{1, &frames.BasicQos{PrefetchCount: 3}, &frames.BasicQosOK{}},
			{2, &frames.ExchangeDeclare{Exchange: "x", Type: "topic"}, &frames.ExchangeDeclareOK{}},
			{2, &frames.BasicGet{Queue: "b"}, &frames.BasicGetEmpty{}},
		}
		toks := make([]Token, len(reqs))
		seen := map[Token]bool{}
		for i, r := range reqs {
			toks[i] = tc.call(r.ch, r.m)
			require.NotZero(tc.t, toks[i])
			require.False(tc.t, seen[toks[i]], "token %d handed out twice", toks[i])
			seen[toks[i]] = true
		}
		// update-secret draws from the same sequence.
		secret, err := tc.conn.UpdateSecret("s", "r")
		require.NoError(tc.t, err)
		require.False(tc.t, seen[secret])
		tc.track(0, secret)
		tc.readMethod(0)

		// Channel 2 answers first, then channel 0, then channel 1.
		for _, i := range []int{1, 4, 5, -1, 0, 2, 3} {
			if i < 0 {
				tc.writeMethod(0, &frames.ConnectionUpdateSecretOK{})
				e := tc.wantEvent(EventReply)
				require.Equal(tc.t, secret, e.Token)
				continue
			}
			e := tc.reply(reqs[i].ch, reqs[i].m.Key(), reqs[i].reply)
			require.Equal(tc.t, toks[i], e.Token, "reply to request %d", i)
		}
		tc.wantIdle()

		// Later requests get new tokens, also on a reopened channel.
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 404})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		tc.wantEvent(EventChannelClosed)
		tc.openChannel(1)
		tok := tc.call(1, &frames.QueueDeclare{Queue: "a"})
		require.False(tc.t, seen[tok] || tok == secret, "token %d reused", tok)
		require.Equal(tc.t, tok, tc.reply(1, frames.MethodQueueDeclare, &frames.QueueDeclareOK{Queue: "a"}).Token)
	})
}

// TestTokenGetOK: a basic.get-ok with content answers the basic.get's token.
func TestTokenGetOK(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		getOK := frames.BasicGetOK{DeliveryTag: 7, MessageCount: 3}
		tc.openChannel(1)
		first := tc.call(1, &frames.BasicGet{Queue: "q"})
		second := tc.call(1, &frames.BasicGet{Queue: "q"})
		tc.writeContent(1, &getOK, &proto.Properties{ContentType: "text/plain"}, []byte("body"))
		e := tc.wantEvent(EventReply)
		require.Equal(tc.t, first, e.Token)
		require.Equal(tc.t, &getOK, e.Method)
		require.Equal(tc.t, []byte("body"), e.Message.Body)
		tc.writeMethod(1, &frames.BasicGetEmpty{})
		require.Equal(tc.t, second, tc.wantEvent(EventReply).Token)
		tc.wantIdle()
	})
}

// TestTokenZeroWithoutReply: methods without a reply, and refused calls,
// return token 0.
func TestTokenZeroWithoutReply(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	tests := []struct {
		name string
		ch   uint16
		m    frames.Method
		err  error
	}{
		{"ack", 1, &frames.BasicAck{DeliveryTag: 1}, nil},
		{"nack", 1, &frames.BasicNack{DeliveryTag: 1}, nil},
		{"reject", 1, &frames.BasicReject{DeliveryTag: 1}, nil},
		{"recover-async", 1, &frames.BasicRecoverAsync{}, nil},
		{"nowait declare", 1, &frames.QueueDeclare{Queue: "q", NoWait: true}, nil},
		{"nowait confirm.select", 1, &frames.ConfirmSelect{NoWait: true}, nil},
		{"refused method", 1, &frames.BasicDeliver{}, ErrNotAllowed},
		{"channel not open", 5, &frames.QueueDeclare{Queue: "q"}, ErrChannelNotOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := tc.conn.Call(tt.ch, tt.m)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
			} else {
				require.NoError(t, err)
			}
			require.Zero(t, tok)
		})
	}
	require.Zero(t, tc.conn.channel(1).pending.len())
}

// channelEnding is a way for channel 1 to end, with the error its pending
// requests fail with.
type channelEnding struct {
	name string
	// midContent: the ending can come while a get-ok's content is
	// incomplete (a channel method cannot: that is a violation).
	midContent bool
	cfg        func(*Config)
	hs         func(*handshakeSpec)
	end        func(tc *testConn)
	err        error // what the failures and EventChannelClosed carry (errors.Is)
	conn       bool  // the whole connection ends
}

func channelEndings() []channelEnding {
	return []channelEnding{
		{
			name: "peer channel.close",
			end: func(tc *testConn) {
				tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 404, ReplyText: "NOT_FOUND - no queue"})
				tc.wantMethod(1, &frames.ChannelCloseOK{})
			},
			err: proto.NotFound,
		},
		{
			name:       "our close with pending requests",
			midContent: true,
			end: func(tc *testConn) {
				require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
				tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
				tc.writeMethod(1, &frames.QueueDeclareOK{Queue: "q"}) // in flight: discarded
				tc.wantIdle()
				tc.writeMethod(1, &frames.ChannelCloseOK{})
			},
			err: ErrClosed,
		},
		{
			name:       "close timeout",
			midContent: true,
			end: func(tc *testConn) {
				require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
				tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
				tc.advance(DefaultCloseTimeout)
			},
			err: ErrCloseTimeout,
		},
		{
			name:       "connection loss",
			midContent: true,
			end:        func(tc *testConn) { tc.writeEOF() },
			err:        ErrConnectionLost,
			conn:       true,
		},
		{
			name:       "heartbeat timeout",
			midContent: true,
			cfg:        func(c *Config) { c.Heartbeat = 2 * time.Second },
			hs:         func(hs *handshakeSpec) { hs.tune.Heartbeat = 2 },
			end: func(tc *testConn) {
				tc.advance(30 * time.Second) // a tick that saw the last input
				tc.advance(30 * time.Second) // silence
				for len(tc.out) > 0 {
					tc.wantHeartbeat()
				}
			},
			err:  ErrHeartbeatTimeout,
			conn: true,
		},
		{
			name:       "server connection.close",
			midContent: true,
			end: func(tc *testConn) {
				tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED"})
				tc.wantMethod(0, &frames.ConnectionCloseOK{})
			},
			err:  proto.ConnectionForced,
			conn: true,
		},
		{
			name:       "our connection close",
			midContent: true,
			end: func(tc *testConn) {
				require.NoError(tc.t, tc.conn.Close(proto.Reply{}))
				tc.wantConnectionClose(200)
				tc.writeMethod(0, &frames.ConnectionCloseOK{})
			},
			err:  ErrClosed,
			conn: true,
		},
	}
}

func (ce channelEnding) open(t *testing.T, opts ...testConnOption) *testConn {
	cfg := testConfig()
	if ce.cfg != nil {
		ce.cfg(&cfg)
	}
	hs := defaultHandshake()
	if ce.hs != nil {
		ce.hs(&hs)
	}
	tc := newTestConn(t, cfg, opts...)
	tc.handshakeWith(hs)
	return tc
}

// TestPendingRequestsFailBeforeChannelClosed: however a channel ends, each
// request still pending on it is answered by a failed EventReply, in
// request order, just before its EventChannelClosed; so does a basic.get
// whose get-ok content was cut off.
func TestPendingRequestsFailBeforeChannelClosed(t *testing.T) {
	for _, ce := range channelEndings() {
		t.Run(ce.name, func(t *testing.T) {
			var logs [][]Event
			for _, mode := range feedModes {
				tc := ce.open(t, withFeedMode(mode))
				tc.openChannel(1)
				tc.openChannel(2)
				other := tc.call(2, &frames.QueueDeclare{Queue: "other"})
				get := tc.call(1, &frames.BasicGet{Queue: "q"})
				declare := tc.call(1, &frames.QueueDeclare{Queue: "q"})
				tc.call(1, &frames.BasicAck{DeliveryTag: 1}) // no reply: not failed
				bind := tc.call(1, &frames.QueueBind{Queue: "q", Exchange: "x"})
				if ce.midContent {
					// The get-ok comes, but its content never completes.
					tc.writeMethod(1, &frames.BasicGetOK{DeliveryTag: 1})
					tc.writeRaw(headerFrame(t, 1, 10, nil))
					tc.writeFrame(frames.FrameBody, 1, []byte("01234"))
				}
				tc.wantIdle()
				ce.end(tc)
				tc.wantFailed(1, get, frames.MethodBasicGet, ce.err)
				tc.wantFailed(1, declare, frames.MethodQueueDeclare, ce.err)
				tc.wantFailed(1, bind, frames.MethodQueueBind, ce.err)
				e := tc.wantEvent(EventChannelClosed)
				require.Equal(t, uint16(1), e.Channel)
				if ce.err == ErrClosed {
					require.NoError(t, e.Err, "a clean close")
				} else {
					require.ErrorIs(t, e.Err, ce.err)
				}
				if ce.conn {
					tc.wantFailed(2, other, frames.MethodQueueDeclare, ce.err)
					require.Equal(t, uint16(2), tc.wantEvent(EventChannelClosed).Channel)
					tc.wantEvent(EventClosed)
				} else {
					// Channel 2 is untouched.
					tc.wantIdle()
					e := tc.reply(2, frames.MethodQueueDeclare, &frames.QueueDeclareOK{Queue: "other"})
					require.Equal(t, other, e.Token)
				}
				tc.wantIdle()
				logs = append(logs, tc.log)
			}
			for i := 1; i < len(logs); i++ {
				require.Equal(t, logs[0], logs[i], "whole vs %s", feedModes[i])
			}
		})
	}
}

// TestUpdateSecretFailsBeforeClosed: an update-secret still pending when
// the connection ends fails with the connection's error (ErrClosed after a
// clean close), just before EventClosed, in request order.
func TestUpdateSecretFailsBeforeClosed(t *testing.T) {
	for _, ce := range channelEndings() {
		if !ce.conn {
			continue
		}
		t.Run(ce.name, func(t *testing.T) {
			tc := ce.open(t)
			tc.openChannel(1)
			var toks []Token
			for _, s := range []string{"one", "two"} {
				tok, err := tc.conn.UpdateSecret(s, "rotation")
				require.NoError(t, err)
				tc.track(0, tok)
				toks = append(toks, tok)
				tc.readMethod(0)
			}
			ce.end(tc)
			require.Equal(t, uint16(1), tc.wantEvent(EventChannelClosed).Channel)
			tc.wantFailed(0, toks[0], frames.MethodConnectionUpdateSecret, ce.err)
			tc.wantFailed(0, toks[1], frames.MethodConnectionUpdateSecret, ce.err)
			e := tc.wantEvent(EventClosed)
			if ce.err == ErrClosed {
				require.NoError(t, e.Err)
			} else {
				require.ErrorIs(t, e.Err, ce.err)
			}
			tc.wantIdle()
		})
	}
}

// TestTooLargeGetOKAnsweredOnce: a basic.get refused for its size is
// answered once, by the failed EventReply after EventMessageTooLarge, not
// again when the channel ends while its body is skipped.
func TestTooLargeGetOKAnsweredOnce(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 10
	tc := newOpenConn(t, cfg, 0)
	tc.openChannel(1)
	get := tc.call(1, &frames.BasicGet{Queue: "q", NoAck: true})
	declare := tc.call(1, &frames.QueueDeclare{Queue: "q"})
	tc.writeMethod(1, &frames.BasicGetOK{DeliveryTag: 1})
	tc.writeRaw(headerFrame(t, 1, 100, nil))
	tc.wantEvent(EventMessageTooLarge)
	tc.wantFailed(1, get, frames.MethodBasicGet, ErrMessageTooLarge)
	tc.writeEOF()
	tc.wantFailed(1, declare, frames.MethodQueueDeclare, ErrConnectionLost)
	tc.wantEvent(EventChannelClosed)
	tc.wantEvent(EventClosed)
	tc.wantIdle()
}
