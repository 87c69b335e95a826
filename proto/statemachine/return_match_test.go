package statemachine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/frames"
)

// RabbitMQ sends a publish's basic.return while routing it, but coalesces
// acks: the acks of earlier publishes (confirmed later by their queues)
// can come between a return and the ack of its own publish. The return
// must still name its publish, not the tag of the next confirm.
func TestConfirmReturnMatchedAcrossOtherAcks(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		publishConfirmMode(tc, 1, 1) // 1: routed, its queue confirms late
		publish(tc, 1, 2, &frames.BasicPublish{RoutingKey: "nowhere", Mandatory: true}, []byte("lost 2"))
		publish(tc, 1, 3, &frames.BasicPublish{RoutingKey: "q", Mandatory: true}, []byte("routed 3"))
		publish(tc, 1, 4, &frames.BasicPublish{RoutingKey: "nowhere", Mandatory: true}, []byte("lost 4"))
		publish(tc, 1, 5, &frames.BasicPublish{RoutingKey: "q"}, []byte("routed 5"))

		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", RoutingKey: "nowhere"}, nil, []byte("lost 2"))
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", RoutingKey: "nowhere"}, nil, []byte("lost 4"))
		tc.wantIdle()
		// 1 settles alone: the returns wait for their own acks.
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 1})
		require.Equal(t, uint64(1), tc.wantEvent(EventConfirm).DeliveryTag)
		tc.wantIdle()
		// A multiple ack up to 3 settles 2 (returned) and 3 (routed).
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 3, Multiple: true})
		ret := tc.wantEvent(EventReturn)
		require.Equal(t, uint64(2), ret.Message.PublishSeq)
		require.Equal(t, []byte("lost 2"), ret.Message.Body)
		require.Equal(t, uint64(3), tc.wantEvent(EventConfirm).DeliveryTag)
		tc.wantIdle()
		// Single acks: 5 before 4 settles nothing returned.
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 5})
		require.Equal(t, uint64(5), tc.wantEvent(EventConfirm).DeliveryTag)
		tc.wantIdle()
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 4})
		ret = tc.wantEvent(EventReturn)
		require.Equal(t, uint64(4), ret.Message.PublishSeq)
		require.Equal(t, []byte("lost 4"), ret.Message.Body)
		require.Equal(t, uint64(4), tc.wantEvent(EventConfirm).DeliveryTag)
		tc.wantIdle()
	})
}
