package statemachine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

func TestHandshakeAllModes(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		props := tc.conn.ServerProperties()
		v, ok := props.Get("product")
		require.True(tc.t, ok)
		product, _ := v.AsString()
		require.Equal(tc.t, "RabbitMQ", product)
		require.Equal(tc.t, Tuning{ChannelMax: 2047, FrameMax: 131072}, tc.conn.Tuning())
		require.True(tc.t, tc.conn.Deadline().IsZero(), "no heartbeats and nothing closing: no timer")
	})
}

func TestHandshakeMechanismChoice(t *testing.T) {
	plain := PlainAuth{Username: "guest", Password: "guest"}
	amqplain := AMQPlainAuth{Username: "guest", Password: "guest"}
	external := ExternalAuth{Identity: "cn=client"}
	tests := []struct {
		name       string
		auth       []Authenticator
		mechanisms string
		want       string
	}{
		{"plain preferred", []Authenticator{plain, amqplain}, "PLAIN AMQPLAIN", "PLAIN"},
		{"amqplain preferred", []Authenticator{amqplain, plain}, "PLAIN AMQPLAIN", "AMQPLAIN"},
		{"our order wins over the server's", []Authenticator{amqplain, plain}, "AMQPLAIN PLAIN", "AMQPLAIN"},
		{"only amqplain offered", []Authenticator{plain, amqplain}, "AMQPLAIN", "AMQPLAIN"},
		{"external", []Authenticator{external, plain}, "PLAIN AMQPLAIN EXTERNAL", "EXTERNAL"},
		{"external not offered", []Authenticator{external, plain}, "PLAIN AMQPLAIN", "PLAIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Auth = tt.auth
			tc := newTestConn(t, cfg)
			tc.handshakeWith(handshakeSpec{mechanisms: tt.mechanisms, tune: defaultHandshake().tune})
			require.Equal(t, tt.want, tc.conn.Mechanism())
		})
	}
}

func TestHandshakeResponses(t *testing.T) {
	r, err := PlainAuth{Username: "u", Password: "p"}.Response()
	require.NoError(t, err)
	require.Equal(t, "\x00u\x00p", string(r))
	r, err = AMQPlainAuth{Username: "guest", Password: "guest"}.Response()
	require.NoError(t, err)
	require.Equal(t, "\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest", string(r))
	r, err = ExternalAuth{}.Response()
	require.NoError(t, err)
	require.Empty(t, r)
	require.NotContains(t, fmt.Sprint(PlainAuth{Username: "u", Password: "secret"}), "secret")
	require.NotContains(t, fmt.Sprint(AMQPlainAuth{Username: "u", Password: "secret"}), "secret")
}

func TestHandshakeNoCommonMechanism(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = []Authenticator{ExternalAuth{}}
	tc := newTestConn(t, cfg)
	tc.writeMethod(0, serverStart("PLAIN AMQPLAIN"))
	e := tc.wantEvent(EventClosed)
	require.ErrorIs(t, e.Err, ErrNoMechanism)
	require.ErrorContains(t, e.Err, "PLAIN AMQPLAIN")
	require.ErrorContains(t, e.Err, "EXTERNAL")
	require.Equal(t, StateClosed, tc.conn.State())
	require.ErrorIs(t, tc.conn.Err(), ErrNoMechanism)
	tc.wantIdle()
	require.True(t, tc.conn.Deadline().IsZero())
	err := tc.conn.Feed([]byte{1})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, err, ErrNoMechanism)
}

func TestHandshakeProtocolMismatch(t *testing.T) {
	tc := newTestConn(t, testConfig())
	start := serverStart("PLAIN")
	start.VersionMinor = 8
	tc.writeMethod(0, start)
	e := tc.wantEvent(EventClosed)
	require.ErrorIs(t, e.Err, frames.ErrProtocolMismatch)
	tc.wantIdle()
}

func TestHandshakeLocale(t *testing.T) {
	tc := newTestConn(t, testConfig())
	start := serverStart("PLAIN")
	start.Locales = "de_DE fr_FR"
	tc.writeMethod(0, start)
	m := tc.readMethod(0).(*frames.ConnectionStartOK)
	require.Equal(t, "de_DE", m.Locale, "the server's first locale when it lacks ours")
}

func TestHandshakeClientProperties(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectionName = "orders"
	cfg.ClientProperties = proto.Table{{Name: "product", Value: proto.String("MyApp")}, {Name: "extra", Value: proto.Int32(1)}}
	tc := newTestConn(t, cfg)
	tc.writeMethod(0, serverStart("PLAIN"))
	m := tc.readMethod(0).(*frames.ConnectionStartOK)
	get := func(name string) string {
		v, ok := m.ClientProperties.Get(name)
		require.True(t, ok, name)
		if s, ok := v.AsString(); ok {
			return s
		}
		return v.String()
	}
	require.Equal(t, "MyApp", get("product"))
	require.Equal(t, "orders", get("connection_name"))
	extra, _ := m.ClientProperties.Get("extra")
	n, _ := extra.AsInt()
	require.Equal(t, int64(1), n)
	caps, ok := m.ClientProperties.Get("capabilities")
	require.True(t, ok)
	ct, ok := caps.AsTable()
	require.True(t, ok)
	for _, name := range []string{"publisher_confirms", "basic.nack", "consumer_cancel_notify", "connection.blocked", "authentication_failure_close"} {
		v, ok := ct.Get(name)
		require.True(t, ok, name)
		b, _ := v.AsBool()
		require.True(t, b, name)
	}
}

// challengeAuth is a multi-step SASL mechanism for tests: it answers every
// challenge c with "resp-"+c.
type challengeAuth struct {
	challenges []string
	fail       error
}

func (*challengeAuth) Mechanism() string         { return "X-CHALLENGE" }
func (*challengeAuth) Response() ([]byte, error) { return []byte("initial"), nil }
func (a *challengeAuth) Challenge(c []byte) ([]byte, error) {
	a.challenges = append(a.challenges, string(c))
	if a.fail != nil {
		return nil, a.fail
	}
	return []byte("resp-" + string(c)), nil
}

func TestHandshakeMultiStepAuth(t *testing.T) {
	cfg := func() Config {
		cfg := testConfig()
		cfg.Auth = []Authenticator{&challengeAuth{}, PlainAuth{}}
		return cfg
	}
	testAllModesWith(t, cfg, func(tc *testConn) {
		auth := tc.cfg.Auth[0].(*challengeAuth)
		tc.serverStartAndWantStartOK("PLAIN X-CHALLENGE")
		tc.writeMethod(0, &frames.ConnectionSecure{Challenge: "one"})
		tc.wantMethod(0, &frames.ConnectionSecureOK{Response: "resp-one"})
		require.Equal(tc.t, StateAwaitTune, tc.conn.State())
		tc.writeMethod(0, &frames.ConnectionSecure{Challenge: "two"})
		tc.wantMethod(0, &frames.ConnectionSecureOK{Response: "resp-two"})
		tc.wantIdle()
		tc.writeMethod(0, &frames.ConnectionTune{ChannelMax: 10, FrameMax: 8192})
		tc.wantMethod(0, &frames.ConnectionTuneOK{ChannelMax: 10, FrameMax: 8192})
		tc.wantMethod(0, &frames.ConnectionOpen{VirtualHost: "/"})
		tc.writeMethod(0, &frames.ConnectionOpenOK{})
		tc.wantEvent(EventConnected)
		require.Equal(tc.t, []string{"one", "two"}, auth.challenges)
	})
}

func TestHandshakeChallengeErrors(t *testing.T) {
	t.Run("single-step mechanism", func(t *testing.T) {
		tc := newTestConn(t, testConfig())
		tc.serverStartAndWantStartOK("PLAIN")
		tc.writeMethod(0, &frames.ConnectionSecure{Challenge: "?"})
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, ErrUnexpectedChallenge)
		tc.wantIdle()
	})
	t.Run("authenticator fails", func(t *testing.T) {
		boom := errors.New("token expired")
		cfg := testConfig()
		cfg.Auth = []Authenticator{&challengeAuth{fail: boom}}
		tc := newTestConn(t, cfg)
		tc.serverStartAndWantStartOK("X-CHALLENGE")
		tc.writeMethod(0, &frames.ConnectionSecure{Challenge: "?"})
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, boom)
		tc.wantIdle()
	})
}

func TestTuneNegotiation(t *testing.T) {
	type tune struct {
		channelMax uint16
		frameMax   uint32
		heartbeat  uint16
	}
	tests := []struct {
		name   string
		cfg    Config // Auth filled in
		server tune
		want   tune // in tune-ok; Tuning matches it
	}{
		{"defaults vs rabbitmq", Config{}, tune{2047, 131072, 60}, tune{2047, 131072, 60}},
		{"server no limits: ours win", Config{}, tune{0, 0, 0}, tune{DefaultChannelMax, DefaultFrameMax, 60}},
		{"lower channel_max: server's", Config{}, tune{100, 131072, 60}, tune{100, 131072, 60}},
		{"lower channel_max: ours", Config{ChannelMax: 10}, tune{2047, 131072, 60}, tune{10, 131072, 60}},
		{"no channel limit either side", Config{ChannelMax: NoLimit}, tune{0, 131072, 60}, tune{NoLimit, 131072, 60}},
		{"no channel limit ours: server's", Config{ChannelMax: NoLimit}, tune{300, 131072, 60}, tune{300, 131072, 60}},
		{"lower frame_max: ours", Config{FrameMax: 8192}, tune{2047, 131072, 60}, tune{2047, 8192, 60}},
		{"lower frame_max: server's", Config{}, tune{2047, 4096, 60}, tune{2047, 4096, 60}},
		{"our frame_max raised to the minimum", Config{FrameMax: 1000}, tune{2047, 0, 60}, tune{2047, frames.FrameMinSize, 60}},
		{"server frame_max below the minimum", Config{}, tune{2047, 1000, 60}, tune{2047, frames.FrameMinSize, 60}},
		{"lower heartbeat: ours", Config{Heartbeat: 10 * time.Second}, tune{2047, 131072, 60}, tune{2047, 131072, 10}},
		{"lower heartbeat: server's", Config{Heartbeat: 120 * time.Second}, tune{2047, 131072, 60}, tune{2047, 131072, 60}},
		{"server no heartbeat: ours", Config{Heartbeat: 5 * time.Second}, tune{2047, 131072, 0}, tune{2047, 131072, 5}},
		{"we want none: none, whatever the server proposes", Config{Heartbeat: -1}, tune{2047, 131072, 60}, tune{2047, 131072, 0}},
		{"neither wants heartbeats", Config{Heartbeat: -1}, tune{2047, 131072, 0}, tune{2047, 131072, 0}},
		{"sub-second heartbeat rounds to 1s", Config{Heartbeat: 300 * time.Millisecond}, tune{2047, 131072, 60}, tune{2047, 131072, 1}},
		{"heartbeat truncated to whole seconds", Config{Heartbeat: 2500 * time.Millisecond}, tune{2047, 131072, 60}, tune{2047, 131072, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Auth = []Authenticator{PlainAuth{Username: "guest", Password: "guest"}}
			tc := newTestConn(t, cfg)
			tc.serverStartAndWantStartOK("PLAIN")
			tc.writeMethod(0, &frames.ConnectionTune{ChannelMax: tt.server.channelMax, FrameMax: tt.server.frameMax, Heartbeat: tt.server.heartbeat})
			tc.wantMethod(0, &frames.ConnectionTuneOK{ChannelMax: tt.want.channelMax, FrameMax: tt.want.frameMax, Heartbeat: tt.want.heartbeat})
			require.Equal(t, Tuning{ChannelMax: tt.want.channelMax, FrameMax: tt.want.frameMax, Heartbeat: time.Duration(tt.want.heartbeat) * time.Second}, tc.conn.Tuning())
			tc.wantMethod(0, &frames.ConnectionOpen{VirtualHost: "/"})
			if tt.want.heartbeat > 0 {
				require.False(t, tc.conn.Deadline().IsZero())
			}
		})
	}
}

func TestHandshakeRefusedLogin(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.serverStartAndWantStartOK("PLAIN AMQPLAIN")
		text := "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
		tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 403, ReplyText: text})
		tc.wantMethod(0, &frames.ConnectionCloseOK{})
		e := tc.wantEvent(EventClosed)
		var ce *proto.ConnectionError
		require.ErrorAs(tc.t, e.Err, &ce)
		require.Equal(tc.t, proto.AccessRefused, ce.Code)
		require.Equal(tc.t, text, ce.Text)
		require.Equal(tc.t, proto.ByPeer, ce.Origin)
		require.ErrorIs(tc.t, e.Err, proto.AccessRefused)
		require.False(tc.t, proto.IsRecoverable(e.Err))
		require.Equal(tc.t, StateClosed, tc.conn.State())
		tc.wantIdle()
	})
}

func TestHandshakeEOF(t *testing.T) {
	t.Run("before start", func(t *testing.T) {
		tc := newTestConn(t, testConfig())
		tc.writeEOF()
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, ErrConnectionLost)
		require.ErrorContains(t, e.Err, "handshake")
		tc.wantIdle()
	})
	t.Run("after start-ok", func(t *testing.T) {
		tc := newTestConn(t, testConfig())
		tc.serverStartAndWantStartOK("PLAIN")
		tc.writeEOF()
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, ErrConnectionLost)
		require.ErrorContains(t, e.Err, "authentication")
		require.ErrorContains(t, e.Err, "PLAIN")
		tc.wantIdle()
	})
	t.Run("after open", func(t *testing.T) {
		tc := newTestConn(t, testConfig())
		tc.serverStartAndWantStartOK("PLAIN")
		tc.writeMethod(0, serverTune())
		tc.readMethod(0)
		tc.readMethod(0)
		tc.writeEOF()
		e := tc.wantEvent(EventClosed)
		require.ErrorIs(t, e.Err, ErrConnectionLost)
		tc.wantIdle()
	})
}

func TestHandshakeUnknownVhost(t *testing.T) {
	cfg := testConfig()
	cfg.VirtualHost = "no-such-vhost"
	testAllModes(t, cfg, func(tc *testConn) {
		tc.serverStartAndWantStartOK("PLAIN")
		tc.writeMethod(0, serverTune())
		tc.readMethod(0)
		tc.wantMethod(0, &frames.ConnectionOpen{VirtualHost: "no-such-vhost"})
		tc.writeMethod(0, &frames.ConnectionClose{ReplyCode: 530, ReplyText: "NOT_ALLOWED - vhost no-such-vhost not found", ClassID: 10, MethodID: 40})
		tc.wantMethod(0, &frames.ConnectionCloseOK{})
		e := tc.wantEvent(EventClosed)
		var ce *proto.ConnectionError
		require.ErrorAs(tc.t, e.Err, &ce)
		require.Equal(tc.t, proto.Reply{Code: proto.NotAllowed, Text: "NOT_ALLOWED - vhost no-such-vhost not found", ClassID: 10, MethodID: 40}, ce.Reply)
		require.Equal(tc.t, proto.ByPeer, ce.Origin)
		require.ErrorIs(tc.t, e.Err, proto.NotAllowed)
		tc.wantIdle()
	})
}

func TestHandshakeTimeout(t *testing.T) {
	for _, stage := range []string{"await-start", "await-tune", "await-open-ok"} {
		t.Run(stage, func(t *testing.T) {
			cfg := testConfig()
			cfg.HandshakeTimeout = 5 * time.Second
			tc := newTestConn(t, cfg)
			require.Equal(t, testStart.Add(5*time.Second), tc.conn.Deadline())
			if stage != "await-start" {
				tc.serverStartAndWantStartOK("PLAIN")
			}
			if stage == "await-open-ok" {
				tc.writeMethod(0, serverTune())
				tc.readMethod(0)
				tc.readMethod(0)
			}
			require.Equal(t, stage, tc.conn.State().String())
			tc.advance(5*time.Second - time.Millisecond)
			tc.wantIdle()
			tc.advance(time.Millisecond)
			e := tc.wantEvent(EventClosed)
			require.ErrorIs(t, e.Err, ErrHandshakeTimeout)
			require.ErrorContains(t, e.Err, stage)
			tc.wantIdle()
			require.True(t, tc.conn.Deadline().IsZero())
		})
	}
	t.Run("finished in time", func(t *testing.T) {
		cfg := testConfig()
		cfg.HandshakeTimeout = 5 * time.Second
		tc := newTestConn(t, cfg)
		tc.advance(4 * time.Second)
		tc.handshake()
		tc.advance(time.Hour)
		tc.wantIdle()
		require.Equal(t, StateOpen, tc.conn.State())
	})
}

func TestHandshakeUnexpectedMethod(t *testing.T) {
	tc := newTestConn(t, testConfig())
	tc.writeMethod(0, serverTune()) // tune before start
	cl := tc.wantConnectionClose(proto.CommandInvalid)
	require.Equal(t, frames.MethodConnectionTune.ClassID(), cl.ClassID)
	require.Equal(t, frames.MethodConnectionTune.MethodID(), cl.MethodID)
	tc.wantIdle()
	require.Equal(t, StateClosing, tc.conn.State())
	tc.writeMethod(0, &frames.ConnectionCloseOK{})
	e := tc.wantEvent(EventClosed)
	var ce *proto.ConnectionError
	require.ErrorAs(t, e.Err, &ce)
	require.Equal(t, proto.ByLocal, ce.Origin)
	require.Equal(t, proto.CommandInvalid, ce.Code)
}

func TestNewConnErrors(t *testing.T) {
	_, err := NewConn(Config{})
	require.ErrorIs(t, err, ErrNoAuth)
	_, err = NewConn(Config{Auth: []Authenticator{nil}})
	require.Error(t, err)
	c, err := NewConn(testConfig())
	require.NoError(t, err)
	require.ErrorIs(t, c.Feed([]byte{1}), ErrNotStarted)
	_, err = c.OpenChannel()
	require.ErrorIs(t, err, ErrNotOpen)
	_, err = c.Call(1, &frames.BasicQos{})
	require.ErrorIs(t, err, ErrNotOpen)
	c.FeedEOF() // ignored before Start
	require.Equal(t, EventNone, c.NextEvent().Kind)
	require.NoError(t, c.Close(proto.Reply{}))
	e := c.NextEvent()
	require.Equal(t, EventClosed, e.Kind)
	require.NoError(t, e.Err)
	require.Equal(t, StateClosed, c.State())
	c.Start(testStart) // ignored once closed
	require.Equal(t, StateClosed, c.State())
	require.Zero(t, c.OutboundLen())
}
