package warren

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// hostileFrame is a raw frame: type, channel, payload, and a frame-end
// byte that need not be 0xCE.
func hostileFrame(typ byte, ch uint16, payload []byte, end byte) []byte {
	b := []byte{typ, byte(ch >> 8), byte(ch)}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, end)
}

func hostileMethod(t *testing.T, ch uint16, m frames.Method) []byte {
	b, err := frames.AppendMethod(nil, ch, m)
	require.NoError(t, err)
	return b
}

// A broker (or a man in the middle) that breaks the protocol's rules after
// the handshake: for each fault the client closes the connection with a
// typed error naming the right reply code, tells the server why in a
// connection.close, and every goroutine ends (TestMain's leak check).
func TestHostileBroker(t *testing.T) {
	deliver := func(t *testing.T, ch uint16) []byte {
		return hostileMethod(t, ch, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1, RoutingKey: "q"})
	}
	header := func(t *testing.T, ch uint16, size uint64) []byte {
		b, err := frames.AppendContentHeader(nil, ch, size, &proto.Properties{})
		require.NoError(t, err)
		return b
	}
	cases := []struct {
		name  string
		bytes func(t *testing.T) []byte
		code  proto.ReplyCode
	}{
		{"frame end byte is not 0xCE", func(t *testing.T) []byte {
			b := hostileMethod(t, 1, &frames.BasicQosOK{})
			b[len(b)-1] = 0x00
			return b
		}, proto.FrameError},
		{"length beyond frame_max", func(t *testing.T) []byte {
			return binary.BigEndian.AppendUint32([]byte{1, 0, 1}, 1<<30)
		}, proto.FrameError},
		{"unknown frame type", func(t *testing.T) []byte { return hostileFrame(9, 0, nil, 0xCE) }, proto.FrameError},
		{"heartbeat on a channel", func(t *testing.T) []byte { return hostileFrame(8, 1, nil, 0xCE) }, proto.FrameError},
		{"content header with no method", func(t *testing.T) []byte { return header(t, 1, 5) }, proto.UnexpectedFrame},
		{"body with no method", func(t *testing.T) []byte { return frames.AppendBody(nil, 1, []byte("x"), 4096) }, proto.UnexpectedFrame},
		{"method between a deliver and its header", func(t *testing.T) []byte {
			return append(deliver(t, 1), hostileMethod(t, 1, &frames.BasicQosOK{})...)
		}, proto.UnexpectedFrame},
		{"body longer than announced", func(t *testing.T) []byte {
			b := append(deliver(t, 1), header(t, 1, 3)...)
			return append(b, frames.AppendBody(nil, 1, []byte("too long"), 4096)...)
		}, proto.FrameError},
		{"content on a channel never opened", func(t *testing.T) []byte {
			return append(deliver(t, 7), header(t, 7, 0)...)
		}, proto.ChannelNotOpen},
		{"a method only clients send", func(t *testing.T) []byte {
			return hostileMethod(t, 1, &frames.BasicPublish{Exchange: "", RoutingKey: "q"})
		}, proto.CommandInvalid},
		{"truncated method arguments", func(t *testing.T) []byte {
			return hostileFrame(1, 1, []byte{0, 60, 0, 60, 0}, 0xCE)
		}, proto.SyntaxError},
		// Who may send what, and where.
		{"a channel's method on channel 0", func(t *testing.T) []byte {
			return hostileMethod(t, 0, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1})
		}, proto.CommandInvalid},
		{"channel.flow on channel 0", func(t *testing.T) []byte { return hostileMethod(t, 0, &frames.ChannelFlow{Active: true}) }, proto.CommandInvalid},
		{"a method on a channel never opened", func(t *testing.T) []byte { return hostileMethod(t, 9, &frames.ChannelOpenOK{}) }, proto.ChannelNotOpen},
		{"connection.start after open", func(t *testing.T) []byte {
			return hostileMethod(t, 0, &frames.ConnectionStart{VersionMinor: 9})
		}, proto.CommandInvalid},
		{"connection.tune after open", func(t *testing.T) []byte { return hostileMethod(t, 0, &frames.ConnectionTune{ChannelMax: 1}) }, proto.CommandInvalid},
		{"connection.close-ok never asked for", func(t *testing.T) []byte { return hostileMethod(t, 0, &frames.ConnectionCloseOK{}) }, proto.CommandInvalid},
		{"channel.open-ok for an open channel", func(t *testing.T) []byte { return hostileMethod(t, 1, &frames.ChannelOpenOK{}) }, proto.CommandInvalid},
		{"channel.close-ok never asked for", func(t *testing.T) []byte { return hostileMethod(t, 1, &frames.ChannelCloseOK{}) }, proto.CommandInvalid},
		{"a reply to no request", func(t *testing.T) []byte { return hostileMethod(t, 1, &frames.BasicQosOK{}) }, proto.CommandInvalid},
		{"consume-ok for a consume never sent", func(t *testing.T) []byte {
			return hostileMethod(t, 1, &frames.BasicConsumeOK{ConsumerTag: "zz"})
		}, proto.CommandInvalid},
		{"get-ok without a get", func(t *testing.T) []byte { return hostileMethod(t, 1, &frames.BasicGetOK{DeliveryTag: 5}) }, proto.CommandInvalid},
		{"basic.ack on a channel not in confirm mode", func(t *testing.T) []byte {
			return hostileMethod(t, 1, &frames.BasicAck{DeliveryTag: 5})
		}, proto.CommandInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			closed := make(chan frames.Method, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _ := hostileConsumer(t, ctx, func(b *scriptedBroker, server *netpipe.Conn) {
				_, _ = server.Write(tc.bytes(t))
				for {
					m, _, err := b.readMethod()
					if err != nil {
						return
					}
					if cl, ok := m.(*frames.ConnectionClose); ok {
						closed <- cl
						b.send(0, &frames.ConnectionCloseOK{})
						return
					}
				}
			})
			select {
			case <-conn.Done():
			case <-ctx.Done():
				t.Fatal("the connection did not end")
			}
			var ce *ConnectionError
			require.True(t, errors.As(conn.Err(), &ce), "typed: %v", conn.Err())
			require.Equal(t, proto.ByLocal, ce.Origin, "Warren closed it: %v", ce)
			require.Equal(t, tc.code, ce.Code, "%v", ce)
			select {
			case m := <-closed:
				require.Equal(t, uint16(ce.Code), m.(*frames.ConnectionClose).ReplyCode, "the server was told why")
			case <-time.After(5 * time.Second):
				t.Fatal("no connection.close reached the server")
			}
		})
	}
}

// appendDeepTable encodes a table nested deeper than the codec accepts,
// by hand: a length-prefixed field table per level.
func appendDeepTable(t proto.Table) ([]byte, error) {
	var encode func(t proto.Table) []byte
	encode = func(t proto.Table) []byte {
		var fields []byte
		for _, f := range t {
			fields = append(fields, byte(len(f.Name)))
			fields = append(fields, f.Name...)
			if inner, ok := f.Value.AsTable(); ok {
				fields = append(fields, 'F')
				fields = append(fields, encode(inner)...)
				continue
			}
			fields = append(fields, 'V')
		}
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(fields))), fields...)
	}
	return encode(t), nil
}

// Headers nested deeper than the codec accepts are legal bytes for a
// frame: the delivery arrives with HeaderErr set and its other
// properties and body intact, and the connection goes on.
func TestHostileBrokerDeepHeaders(t *testing.T) {
	deep := proto.Table{{Name: "v", Value: proto.Void()}}
	for range 200 {
		deep = proto.Table{{Name: "n", Value: proto.TableValue(deep)}}
	}
	fields, err := appendDeepTable(deep)
	require.NoError(t, err)
	body := []byte("body")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, cons := hostileConsumer(t, ctx, func(b *scriptedBroker, server *netpipe.Conn) {
		out := hostileMethod(t, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1, RoutingKey: "q"})
		payload := []byte{0, 60, 0, 0}
		payload = binary.BigEndian.AppendUint64(payload, uint64(len(body)))
		payload = append(payload, 0x20, 0x00) // property flags: headers only
		payload = append(payload, fields...)
		out = append(out, hostileFrame(2, 1, payload, 0xCE)...)
		out = append(out, frames.AppendBody(nil, 1, body, 4096)...)
		_, _ = server.Write(out)
		b.serveMethods(nil)
	})
	d := receive(t, ctx, cons)
	require.Error(t, d.HeaderErr, "the headers could not be decoded")
	require.Equal(t, body, d.Body)
	require.True(t, conn.IsAlive())
	require.NoError(t, conn.Close(ctx))
}

// hostileConsumer connects to a scripted broker that completes the
// handshake, opens channel 1 and answers a basic.consume for no-ack
// consumer "c", then hands over to then; it returns the connection and
// its consumer.
func hostileConsumer(t *testing.T, ctx context.Context, then func(b *scriptedBroker, server *netpipe.Conn)) (*Connection, *Consumer) {
	t.Helper()
	return hostileConsumerWith(t, ctx, Config{}, true, then)
}

// hostileConsumerWith is hostileConsumer with a Config (recovery and
// heartbeats are turned off) and a choice of acknowledgement mode.
func hostileConsumerWith(t *testing.T, ctx context.Context, cfg Config, noAck bool, then func(b *scriptedBroker, server *netpipe.Conn)) (*Connection, *Consumer) {
	t.Helper()
	connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
		b := newScripted(t, server)
		if b.handshake(0) != nil || b.answerChannel(false) != nil {
			return
		}
		for {
			m, _, err := b.readMethod()
			if err != nil {
				return
			}
			if _, ok := m.(*frames.BasicQos); ok {
				b.send(1, &frames.BasicQosOK{})
				continue
			}
			if _, ok := m.(*frames.BasicConsume); ok {
				break
			}
		}
		b.send(1, &frames.BasicConsumeOK{ConsumerTag: "c"})
		then(b, server)
	}}
	t.Cleanup(connector.Wait)
	cfg.Recovery = Recovery{Disabled: true}
	cfg.Heartbeat = -1
	conn, err := Connect(ctx, connector, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { // before connector.Wait: the server's goroutine ends with the stream
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	ch, err := conn.Channel(ctx)
	require.NoError(t, err)
	cons, err := ch.Consume(ctx, "q", ConsumeOptions{NoAck: noAck, ConsumerTag: "c"})
	require.NoError(t, err)
	return conn, cons
}
