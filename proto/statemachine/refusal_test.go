package statemachine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// A server that refuses our protocol version answers with its own header
// and closes; the machine reports that (errors.Is ErrProtocolMismatch)
// without trying a connection.close the server would not understand.
func TestServerRefusesProtocolVersion(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.writeRaw([]byte("AMQP\x00\x00\x09\x00"))
		err := tc.wantClosed()
		require.ErrorIs(t, err, frames.ErrProtocolMismatch)
		require.Empty(t, tc.out, "nothing is sent to a server that speaks another protocol")
	})
}

// Close during the handshake abandons it without sending connection.close
// (there is no connection yet) and reports an error wrapping ErrClosed.
func TestCloseDuringHandshake(t *testing.T) {
	tc := newTestConn(t, testConfig())
	tc.writeMethod(0, serverStart("PLAIN"))
	tc.readMethod(0) // start-ok
	require.NoError(t, tc.conn.Close(proto.Reply{}))
	err := tc.wantClosed()
	require.ErrorIs(t, err, ErrClosed)
	require.Empty(t, tc.out)
}

// When the broker's channel.close crosses ours, the channel's end reports
// the broker's reason (it says more than our own close).
func TestCrossingChannelCloseReportsPeerReason(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		require.NoError(t, tc.conn.CloseChannel(1, proto.Reply{}))
		tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406, ReplyText: "PRECONDITION_FAILED - crossing", ClassID: 50, MethodID: 10})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		tc.writeMethod(1, &frames.ChannelCloseOK{})
		e := tc.wantEvent(EventChannelClosed)
		var ce *proto.ChannelError
		require.ErrorAs(t, e.Err, &ce)
		require.Equal(t, proto.PreconditionFailed, ce.Code)
		require.Equal(t, proto.ByPeer, ce.Origin)
		require.Equal(t, ChannelFree, tc.conn.ChannelState(1))
	})
}

// Neither a trace nor a formatted Config shows the password.
func TestTraceAndFormattingHideThePassword(t *testing.T) {
	var trace []string
	cfg := testConfig()
	cfg.Auth = []Authenticator{PlainAuth{Username: "guest", Password: "Sup3rSecret"}, AMQPlainAuth{Username: "guest", Password: "Sup3rSecret"}}
	cfg.Trace = func(dir Direction, ch uint16, frame string) { trace = append(trace, dir.String()+" "+frame) }
	tc := newTestConn(t, cfg)
	tc.handshake()
	_, err := tc.conn.UpdateSecret("Sup3rSecret", "rotation")
	require.NoError(t, err)
	tc.pump()
	all := strings.Join(trace, "\n")
	require.Contains(t, all, "connection.start-ok")
	require.NotContains(t, all, "Sup3rSecret")
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		require.NotContains(t, fmt.Sprintf(format, cfg), "Sup3rSecret", format)
	}
}

// Ack, Nack and Reject write the same frames as Call with the method, and
// refuse a channel that is not open without writing anything.
func TestAckNackRejectShortcuts(t *testing.T) {
	tc := newTestConn(t, testConfig())
	tc.handshake()
	tc.openChannel(1)
	require.NoError(t, tc.conn.Ack(1, 7, true))
	tc.wantMethod(1, &frames.BasicAck{DeliveryTag: 7, Multiple: true})
	require.NoError(t, tc.conn.Nack(1, 8, false, true))
	tc.wantMethod(1, &frames.BasicNack{DeliveryTag: 8, Requeue: true})
	require.NoError(t, tc.conn.Reject(1, 9, false))
	tc.wantMethod(1, &frames.BasicReject{DeliveryTag: 9})
	require.ErrorIs(t, tc.conn.Ack(2, 1, false), ErrChannelNotOpen)
	require.ErrorIs(t, tc.conn.Nack(2, 1, false, false), ErrChannelNotOpen)
	require.ErrorIs(t, tc.conn.Reject(2, 1, false), ErrChannelNotOpen)
	tc.wantIdle()
}

// ReadBuffer and Received feed the machine without a copy and give the
// same events as Feed, whatever the read sizes.
func TestReadBufferReceivedMatchesFeed(t *testing.T) {
	stream := append(methodFrame(t, 0, serverStart("PLAIN")), methodFrame(t, 0, serverTune())...)
	stream = append(stream, methodFrame(t, 0, &frames.ConnectionOpenOK{})...)
	for _, chunk := range []int{1, 3, 7, 64, len(stream)} {
		c, err := NewConn(testConfig())
		require.NoError(t, err)
		c.Start(testStart)
		var kinds []EventKind
		for off := 0; off < len(stream); off += chunk {
			n := copy(c.ReadBuffer(chunk), stream[off:min(off+chunk, len(stream))])
			require.NoError(t, c.Received(n))
			for e := c.NextEvent(); e.Kind != EventNone; e = c.NextEvent() {
				kinds = append(kinds, e.Kind)
			}
		}
		require.Equal(t, []EventKind{EventConnected}, kinds, "chunk %d", chunk)
		require.Equal(t, StateOpen, c.State())
		require.Error(t, c.Received(1<<30), "more than ReadBuffer offered")
	}
}
