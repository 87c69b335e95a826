package fuzz

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// TestHandMadeVectors checks the hand-made seeds against the values they
// were written to encode, so that a typo in a vector cannot pass for a
// codec bug (or hide one), and checks that Warren's encoder writes the
// same bytes.
func TestHandMadeVectors(t *testing.T) {
	stamp := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

	t.Run("stream", func(t *testing.T) {
		b := streamDeliver
		var kinds []frames.FrameType
		for len(b) > 0 {
			fr, n, err := frames.ReadFrame(b, frames.FrameMinSize)
			require.NoError(t, err)
			require.NotZero(t, n, "incomplete frame in a complete vector")
			kinds = append(kinds, fr.Type)
			switch fr.Type {
			case frames.FrameMethod:
				m, err := frames.DecodeMethod(fr.Channel, fr.Payload)
				require.NoError(t, err)
				require.Equal(t, &frames.BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "ex", RoutingKey: "rk"}, m)
			case frames.FrameHeader:
				var h frames.ContentHeader
				require.NoError(t, h.Parse(fr.Channel, fr.Payload))
				require.EqualValues(t, 5, h.BodySize)
				p, err := h.Properties.Properties()
				require.NoError(t, err)
				require.Equal(t, proto.Properties{ContentType: "text/plain", DeliveryMode: proto.Persistent,
					Flags: proto.FlagContentType | proto.FlagDeliveryMode}, p)
			case frames.FrameBody:
				require.Equal(t, "hello", string(fr.Payload))
			}
			b = b[n:]
		}
		require.Equal(t, []frames.FrameType{frames.FrameMethod, frames.FrameHeader, frames.FrameBody, frames.FrameHeartbeat}, kinds)

		enc, err := frames.AppendMessage(nil, 1,
			&frames.BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "ex", RoutingKey: "rk"},
			&proto.Properties{ContentType: "text/plain", DeliveryMode: proto.Persistent}, []byte("hello"), frames.FrameMinSize)
		require.NoError(t, err)
		enc = frames.AppendHeartbeat(enc)
		require.Equal(t, streamDeliver, enc, "Warren encodes the message differently from the spec's bytes")
	})

	t.Run("protocol header", func(t *testing.T) {
		major, minor, rev, err := frames.ParseProtocolHeader(protocolHeader)
		require.NoError(t, err)
		require.Equal(t, [3]uint8{0, 9, 1}, [3]uint8{major, minor, rev})
		_, _, err = frames.ReadFrame(protocolHeader, 0)
		require.ErrorIs(t, err, frames.ErrProtocolMismatch)
	})

	t.Run("table", func(t *testing.T) {
		want := proto.Table{
			{Name: "t", Value: proto.Bool(true)},
			{Name: "b", Value: proto.Int8(-1)},
			{Name: "B", Value: proto.Uint8(255)},
			{Name: "s", Value: proto.Int16(-2)},
			{Name: "u", Value: proto.Uint16(65535)},
			{Name: "I", Value: proto.Int32(-3)},
			{Name: "i", Value: proto.Uint32(42)},
			{Name: "l", Value: proto.Int64(-4)},
			{Name: "L", Value: proto.Int64L(1 << 40)},
			{Name: "f", Value: proto.Float32(1.5)},
			{Name: "d", Value: proto.Float64(1.5)},
			{Name: "D", Value: proto.DecimalValue(proto.Decimal{Scale: 2, Value: 314})},
			{Name: "S", Value: proto.String("text")},
			{Name: "x", Value: proto.Bytes([]byte{1, 2, 3})},
			{Name: "A", Value: proto.ArrayValue(proto.Int32(1), proto.String("two"), proto.Bool(false), proto.Void())},
			{Name: "T", Value: proto.Timestamp(stamp)},
			{Name: "F", Value: proto.TableValue(proto.Table{{Name: "x", Value: proto.String("y")}})},
			{Name: "V", Value: proto.Void()},
		}
		got, n, err := proto.ReadTable(tableEveryType)
		require.NoError(t, err)
		require.Equal(t, len(tableEveryType), n)
		require.Equal(t, want, got)
		enc, err := proto.AppendTable(nil, want)
		require.NoError(t, err)
		require.Equal(t, tableEveryType, enc)
	})

	t.Run("properties", func(t *testing.T) {
		p, err := proto.ParseProperties(propsAll)
		require.NoError(t, err)
		require.Equal(t, proto.Properties{
			ContentType: "application/json", ContentEncoding: "utf-8",
			Headers:      proto.Table{{Name: "k", Value: proto.String("v")}},
			DeliveryMode: 2, Priority: 5, CorrelationID: "corr-1", ReplyTo: "reply.q", Expiration: "60000",
			MessageID: "mid-1", Timestamp: stamp, Type: "kind", UserID: "guest", AppID: "capture", ClusterID: "c1",
			Flags: proto.AllPropertyFlags,
		}, p)
		enc, err := p.Append(nil)
		require.NoError(t, err)
		require.Equal(t, propsAll, enc)

		p, err = proto.ParseProperties(propsEmptyContentType)
		require.NoError(t, err)
		require.Equal(t, proto.Properties{Flags: proto.FlagContentType}, p)

		p, err = proto.ParseProperties(propsContinuation)
		require.NoError(t, err)
		require.Equal(t, proto.Properties{DeliveryMode: 1, Flags: proto.FlagDeliveryMode}, p)

		p, err = proto.ParseProperties(propsNone)
		require.NoError(t, err)
		require.Equal(t, proto.Properties{}, p)
	})

	t.Run("methods", func(t *testing.T) {
		want := map[string]frames.Method{
			"connection.start": nil, // server-properties checked by the table case
			"connection.tune":  &frames.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
			"connection.close": &frames.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED"},
			"channel.open":     &frames.ChannelOpen{},
			"channel.close":    &frames.ChannelClose{ReplyCode: 404, ReplyText: "NOT_FOUND", ClassID: 50, MethodID: 10},
			"queue.declare": &frames.QueueDeclare{Queue: "q", Durable: true,
				Arguments: proto.Table{{Name: "x-max-length", Value: proto.Int32(10)}}},
			"basic.publish": &frames.BasicPublish{RoutingKey: "rk", Mandatory: true},
			"basic.deliver": &frames.BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "ex", RoutingKey: "rk"},
			"basic.nack":    &frames.BasicNack{DeliveryTag: 7, Multiple: true, Requeue: true},
			"tx.select":     &frames.TxSelect{},
		}
		for _, v := range handMadeMethods {
			payload := concat([]byte{byte(v.class >> 8), byte(v.class), byte(v.method >> 8), byte(v.method)}, v.args)
			m, err := frames.DecodeMethod(0, payload)
			require.NoError(t, err, v.name)
			require.Equal(t, v.name, m.Key().String())
			w, ok := want[v.name]
			require.True(t, ok, "no expectation for %s", v.name)
			if w == nil {
				start := m.(*frames.ConnectionStart)
				require.Equal(t, uint8(9), start.VersionMinor)
				require.Len(t, start.ServerProperties, 18)
				require.Equal(t, "PLAIN", start.Mechanisms)
				require.Equal(t, "en_US", start.Locales)
			} else {
				require.Equal(t, w, m, v.name)
			}
			enc, err := frames.AppendMethodArgs(nil, m)
			require.NoError(t, err)
			require.Equal(t, payload, enc, "%s: Warren encodes differently from the spec's bytes", v.name)
		}
	})
}
