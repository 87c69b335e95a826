package statemachine

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// sameArray reports whether a and b share their backing array's start.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:1][0] == &b[:1][0]
}

// deliveryStream returns n encoded deliveries to consumer "c" on channel
// 1, numbered from 1, with bodies "body 1", "body 2", …
func deliveryStream(t testing.TB, n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		var err error
		b, err = frames.AppendMessage(b, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: uint64(i)},
			&proto.Properties{ContentType: "text/plain"}, []byte(fmt.Sprint("body ", i)), 0)
		require.NoError(t, err)
	}
	return b
}

// drainDeliveries takes the events until EventNone and returns the
// delivery tags, checking each delivery's body and properties.
func drainDeliveries(t testing.TB, c *Conn) []uint64 {
	t.Helper()
	var tags []uint64
	for e := c.NextEvent(); e.Kind != EventNone; e = c.NextEvent() {
		require.Equal(t, EventDelivery, e.Kind, "%+v", e)
		require.Equal(t, fmt.Sprint("body ", e.Message.DeliveryTag), string(e.Message.Body))
		require.Equal(t, "text/plain", string(e.Message.Properties.ContentType))
		tags = append(tags, e.Message.DeliveryTag)
	}
	return tags
}

func TestAdopt(t *testing.T) {
	stream := deliveryStream(t, 3)
	one := len(stream) / 3 // one delivery's bytes
	tests := []struct {
		name string
		// reads: the stream's bytes in the order read, each handed over
		// with Adopt (after Feed of feedFirst bytes, if any).
		feedFirst int
		reads     []int // cut points in stream
		// kept: for each read, whether the machine keeps its array.
		kept []bool
		// tags: deliveries reported after each read.
		tags [][]uint64
	}{
		{"whole deliveries", 0, []int{one, 3 * one}, []bool{true, true}, [][]uint64{{1}, {2, 3}}},
		{"after a partial frame fed", 5, []int{one, 3 * one}, []bool{false, true}, [][]uint64{{1}, {2, 3}}},
		{"a delivery split across three reads", 0, []int{10, one - 3, one}, []bool{true, false, false}, [][]uint64{nil, nil, {1}}},
		{"a trailing partial frame", 0, []int{one + 20, 2 * one, 3 * one}, []bool{true, false, true}, [][]uint64{{1}, {2}, {3}}},
		{"a byte at a time", 0, []int{1, 2, 3, one}, []bool{true, false, false, false}, [][]uint64{nil, nil, nil, {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			tc.consume(1, "c", true)
			c := tc.conn
			off := 0
			if tt.feedFirst > 0 {
				require.NoError(t, c.Feed(stream[:tt.feedFirst]))
				off = tt.feedFirst
				require.Equal(t, EventNone, c.NextEvent().Kind)
				require.True(t, c.HasInput())
			}
			for i, end := range tt.reads {
				p := bytes.Clone(stream[off:end])
				off = end
				require.NoError(t, c.Adopt(p))
				require.Equal(t, tt.kept[i], sameArray(c.in, p), "read %d: kept the caller's array", i)
				require.Equal(t, tt.tags[i], drainDeliveries(t, c), "read %d", i)
				partial := off%one != 0
				require.Equal(t, partial, c.HasInput(), "read %d: HasInput", i)
				in := c.in
				released := c.ReleaseInput()
				if partial {
					require.Nil(t, released, "read %d: a buffer with a partial frame released", i)
					continue
				}
				require.NotNil(t, released, "read %d", i)
				require.Empty(t, released)
				require.True(t, sameArray(in, released), "read %d: ReleaseInput gave back another array", i)
				require.Nil(t, c.ReleaseInput(), "read %d: released twice", i)
				require.False(t, c.HasInput())
				scribble(released)
			}
		})
	}
}

func TestAdoptErrors(t *testing.T) {
	c, err := NewConn(testConfig())
	require.NoError(t, err)
	require.ErrorIs(t, c.Adopt([]byte{1}), ErrNotStarted)
	require.False(t, c.HasInput())
	tc := newOpenConn(t, testConfig(), 0)
	require.NoError(t, tc.conn.Adopt(nil), "nothing read")
	require.NoError(t, tc.conn.Adopt([]byte{}))
	tc.writeEOF()
	tc.wantClosed()
	require.ErrorIs(t, tc.conn.Adopt([]byte{1}), ErrClosed)
}

// TestReleaseInput: ReleaseInput gives the input buffer back only when
// nothing is left to parse.
func TestReleaseInput(t *testing.T) {
	frame := methodFrame(t, 1, &frames.BasicQosOK{})
	tests := []struct {
		name     string
		feed     func(tc *testConn)
		drain    bool // drain the events before releasing
		released bool
	}{
		{"no input yet", func(tc *testConn) {}, true, false},
		{"a whole frame drained", func(tc *testConn) { require.NoError(tc.t, tc.conn.Feed(frame)) }, true, true},
		{"a whole frame not yet parsed", func(tc *testConn) { require.NoError(tc.t, tc.conn.Feed(frame)) }, false, false},
		{"a partial frame", func(tc *testConn) { require.NoError(tc.t, tc.conn.Feed(frame[:len(frame)-1])) }, true, false},
		{"a frame and a partial one", func(tc *testConn) {
			require.NoError(tc.t, tc.conn.Feed(append(bytes.Clone(frame), frame[:3]...)))
		}, true, false},
		{"read into ReadBuffer", func(tc *testConn) {
			buf := tc.conn.ReadBuffer(len(frame))
			require.NoError(tc.t, tc.conn.Received(copy(buf, frame)))
		}, true, true},
		{"unparseable input", func(tc *testConn) {
			require.NoError(tc.t, tc.conn.Feed(rawFrame(5, 0, []byte("garbage and more"))))
		}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			c := tc.conn
			// The harness fed the handshake with Feed: start from no buffer.
			c.ReleaseInput()
			_, err := c.Call(1, &frames.BasicQos{}) // what the frames answer
			require.NoError(t, err)
			c.AppendOutbound(nil)
			tt.feed(tc)
			if tt.drain {
				for c.NextEvent().Kind != EventNone {
				}
			}
			b := c.ReleaseInput()
			if !tt.released {
				require.Nil(t, b)
				return
			}
			require.NotNil(t, b)
			require.Empty(t, b)
			require.False(t, c.HasInput())
			require.Nil(t, c.in)
			// The machine goes on with a new buffer.
			scribble(b)
			require.Nil(t, c.ReleaseInput())
		})
	}
}

// TestReleaseOutbound: the outbound buffer is handed back only when
// nothing is pending, and the next command starts a new one.
func TestReleaseOutbound(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	c := tc.conn
	// The harness took every byte: the emptied buffer is released.
	first := c.ReleaseOutbound()
	require.NotNil(t, first)
	require.Empty(t, first)
	require.Nil(t, c.ReleaseOutbound(), "no buffer any more")
	_, err := c.Call(1, &frames.BasicQos{PrefetchCount: 1})
	require.NoError(t, err)
	require.Nil(t, c.ReleaseOutbound(), "bytes pending")
	require.NotZero(t, c.OutboundLen())
	pending := c.out
	out := c.AppendOutbound(nil)
	require.Equal(t, methodFrame(t, 1, &frames.BasicQos{PrefetchCount: 1}), out)
	b := c.ReleaseOutbound()
	require.NotNil(t, b)
	require.Empty(t, b)
	require.True(t, sameArray(pending, b))
	require.Nil(t, c.ReleaseOutbound(), "released twice")
	scribble(b)

	// The next command writes into a new buffer.
	_, err = c.Call(1, &frames.BasicQos{PrefetchCount: 2})
	require.NoError(t, err)
	require.False(t, sameArray(b, c.out))
	require.Equal(t, methodFrame(t, 1, &frames.BasicQos{PrefetchCount: 2}), c.AppendOutbound(nil))
}

// TestAdoptModeUsesEveryPath checks that the harness's adopt mode, which
// every testAllModes scenario and traffic replay runs, hands buffers over
// with Adopt and with ReadBuffer, releases them, and reports what feeding
// whole does.
func TestAdoptModeUsesEveryPath(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = []Authenticator{AMQPlainAuth{Username: "guest", Password: "guest"}}
	whole := newTestConn(t, cfg)
	coreScenario(whole)
	for seed := range uint64(10) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			tc := newTestConn(t, cfg, withFeedMode(feedAdopt), withSeed(seed))
			coreScenario(tc)
			require.Equal(t, whole.log, tc.log)
			require.NotZero(t, tc.adopted, "Adopt never used")
			require.NotZero(t, tc.received, "ReadBuffer never used")
			require.NotZero(t, tc.released, "no input buffer released")
			require.NotEmpty(t, tc.pool, "no released buffer to reuse")
		})
	}
}

// TestTrafficThroughAdopt replays a recorded RabbitMQ session through Adopt
// with buffers released and reused, and compares the events with those of
// the session fed whole.
func TestTrafficThroughAdopt(t *testing.T) {
	dir := recordingsDir(t)
	for _, name := range []string{"session-full", "confirms-nack"} {
		t.Run(name, func(t *testing.T) {
			cfg := amqplainConfig("guest")
			cfg.Heartbeat = 4 * time.Second
			if name == "confirms-nack" {
				cfg = Config{Auth: []Authenticator{PlainAuth{Username: "guest", Password: "guest"}}}
			}
			whole := newTestConn(t, cfg)
			replay(t, whole, dir, name)
			tc := newTestConn(t, cfg, withFeedMode(feedAdopt))
			replay(t, tc, dir, name)
			require.Equal(t, whole.log, tc.log)
			require.NotZero(t, tc.adopted)
			require.NotZero(t, tc.released)
		})
	}
}
