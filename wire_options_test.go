package warren

import (
	"context"
	"io"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// The options RabbitMQ refuses or ignores (immediate, a prefetch size,
// channel.flow active=false, basic.recover without requeue, no-local) are
// still encoded on the wire as the spec says: a scripted peer checks each
// frame the client sends.
func TestWireEncodingOfRefusedOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got := make(chan frames.Method, 16)
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(0) != nil {
				return
			}
			if b.answerChannel(false) != nil {
				return
			}
			for {
				f, err := b.readFrame()
				if err != nil {
					return
				}
				if f.Type != frames.FrameMethod {
					continue
				}
				m, err := frames.DecodeMethod(f.Channel, f.Payload)
				if err != nil {
					return
				}
				got <- m
				switch m := m.(type) {
				case *frames.BasicQos:
					b.send(1, &frames.BasicQosOK{})
				case *frames.ChannelFlow:
					b.send(1, &frames.ChannelFlowOK{Active: m.Active})
				case *frames.BasicRecover:
					b.send(1, &frames.BasicRecoverOK{})
				case *frames.BasicConsume:
					b.send(1, &frames.BasicConsumeOK{ConsumerTag: m.ConsumerTag})
				case *frames.ConnectionClose:
					b.send(0, &frames.ConnectionCloseOK{})
					_, _ = io.Copy(io.Discard, server)
					return
				}
			}
		}}
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{})
		require.NoError(t, err)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)

		require.NoError(t, ch.Publish(ctx, "x", "k", Publishing{Immediate: true, Mandatory: true, Body: []byte("b")}))
		require.Equal(t, &frames.BasicPublish{Exchange: "x", RoutingKey: "k", Mandatory: true, Immediate: true}, <-got)

		require.NoError(t, ch.Qos(ctx, QosOptions{PrefetchCount: 7, PrefetchSize: 4096, Global: true}))
		require.Equal(t, &frames.BasicQos{PrefetchCount: 7, PrefetchSize: 4096, Global: true}, <-got)

		require.NoError(t, ch.Flow(ctx, false))
		require.Equal(t, &frames.ChannelFlow{Active: false}, <-got)

		require.NoError(t, ch.Recover(ctx, false))
		require.Equal(t, &frames.BasicRecover{Requeue: false}, <-got)

		require.NoError(t, ch.RecoverAsync(ctx, true))
		require.Equal(t, &frames.BasicRecoverAsync{Requeue: true}, <-got)

		args := proto.Table{{Name: "x-priority", Value: proto.Int32(5)}}
		cons, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "tag", NoLocal: true, NoAck: true, Exclusive: true, Arguments: args})
		require.NoError(t, err)
		require.Equal(t, "tag", cons.Tag)
		require.Equal(t, &frames.BasicConsume{Queue: "q", ConsumerTag: "tag", NoLocal: true, NoAck: true, Exclusive: true, Arguments: args}, <-got)
		require.Equal(t, []string{"tag"}, ch.NoAckConsumers())

		require.NoError(t, conn.Close(ctx))
	})
}
