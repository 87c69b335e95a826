package statemachine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// coreScenario is a session touching most of the machine: handshake,
// pipelined requests, consuming with multi-frame bodies on two channels,
// confirms with a return, get, a server channel close and a clean
// connection close.
func coreScenario(tc *testConn) {
	tc.t.Helper()
	tc.handshakeWith(handshakeSpec{mechanisms: "AMQPLAIN PLAIN", tune: frames.ConnectionTune{ChannelMax: 10, FrameMax: 4096}})
	tc.openChannel(1)
	tc.openChannel(2)
	tc.call(1, &frames.QueueDeclare{Queue: "q"})
	tc.call(1, &frames.BasicQos{PrefetchCount: 5})
	tc.writeMethod(1, &frames.QueueDeclareOK{Queue: "q", MessageCount: 2})
	tc.writeMethod(1, &frames.BasicQosOK{})
	tc.wantEvent(EventReply)
	tc.wantEvent(EventReply)
	tc.consume(1, "c1", false)
	tc.consume(2, "c2", true)

	big := bodyOf(10000) // three body frames at frame_max 4096
	tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 1}, fullProperties(), big)
	tc.writeContent(2, &frames.BasicDeliver{ConsumerTag: "c2", DeliveryTag: 1}, nil, []byte("small"))
	tc.writeContent(1, &frames.BasicDeliver{ConsumerTag: "c1", DeliveryTag: 2, Redelivered: true}, nil, nil)
	e := tc.wantEvent(EventDelivery)
	require.Equal(tc.t, big, e.Message.Body)
	requireProperties(tc.t, fullProperties(), e.Message.Properties)
	require.Equal(tc.t, []byte("small"), tc.wantEvent(EventDelivery).Message.Body)
	require.True(tc.t, tc.wantEvent(EventDelivery).Message.Redelivered)

	publishConfirmMode(tc, 2, 3)
	tc.writeContent(2, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE"}, &proto.Properties{MessageID: "m3"}, []byte("m3"))
	tc.writeMethod(2, &frames.BasicAck{DeliveryTag: 3, Multiple: true})
	require.Equal(tc.t, uint64(3), tc.wantEvent(EventReturn).Message.PublishSeq)
	tc.wantEvent(EventConfirm)

	tc.call(1, &frames.BasicGet{Queue: "q"})
	tc.writeContent(1, &frames.BasicGetOK{DeliveryTag: 3, MessageCount: 1}, nil, big[:5000])
	require.Equal(tc.t, big[:5000], tc.wantEvent(EventReply).Message.Body)

	tc.writeMethod(0, &frames.ConnectionBlocked{Reason: "disk"})
	tc.wantEvent(EventBlocked)
	tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406, ReplyText: "PRECONDITION_FAILED - unknown delivery tag 9"})
	tc.wantMethod(1, &frames.ChannelCloseOK{})
	tc.wantEvent(EventChannelClosed)
	tc.writeHeartbeat()
	require.NoError(tc.t, tc.conn.Close(proto.Reply{}))
	tc.wantConnectionClose(200)
	tc.wantEvent(EventChannelClosed)
	tc.writeMethod(0, &frames.ConnectionCloseOK{})
	require.NoError(tc.t, tc.wantEvent(EventClosed).Err)
	tc.wantIdle()
}

func TestCoreScenarioAllModes(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = []Authenticator{AMQPlainAuth{Username: "guest", Password: "guest"}, PlainAuth{Username: "guest", Password: "guest"}}
	testAllModes(t, cfg, coreScenario)
}

func TestCoreScenarioRandomSplits(t *testing.T) {
	cfg := testConfig()
	cfg.Auth = []Authenticator{AMQPlainAuth{Username: "guest", Password: "guest"}}
	whole := newTestConn(t, cfg)
	coreScenario(whole)
	for seed := range uint64(25) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			tc := newTestConn(t, cfg, withFeedMode(feedRandom), withSeed(seed))
			coreScenario(tc)
			require.Equal(t, whole.log, tc.log)
			require.Greater(t, tc.feeds, whole.feeds)
		})
	}
}
