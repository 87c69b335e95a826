//go:build !race

package frames

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// allocProperties are the properties of the allocation tests: content-type,
// delivery-mode and a headers table with two entries.
func allocProperties() *proto.Properties {
	return &proto.Properties{
		ContentType:  "application/json",
		DeliveryMode: proto.Persistent,
		Headers: proto.Table{
			{Name: "x-trace", Value: proto.String("abc123")},
			{Name: "x-retries", Value: proto.Int32(3)},
		},
	}
}

var (
	sinkMethod Method
	sinkBytes  []byte
)

// TestAllocParseDelivery: reading a delivery (basic.deliver, content header,
// 64-byte body) out of a buffer with a warmed-up Parser allocates nothing.
func TestAllocParseDelivery(t *testing.T) {
	body := make([]byte, 64)
	for i := range body {
		body[i] = byte(i)
	}
	buf, err := AppendMessage(nil, 1,
		&BasicDeliver{ConsumerTag: "ctag-1", DeliveryTag: 42, Exchange: "events", RoutingKey: "order.created"},
		allocProperties(), body, 131072)
	require.NoError(t, err)

	var p Parser
	var h ContentHeader
	parse := func() {
		f, n, err := ReadFrame(buf, 131072)
		if err != nil || n == 0 || f.Type != FrameMethod {
			t.Fatalf("method frame: n=%d err=%v", n, err)
		}
		m, err := p.ParseMethod(f.Channel, f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		off := n
		f, n, err = ReadFrame(buf[off:], 131072)
		if err != nil || n == 0 || f.Type != FrameHeader {
			t.Fatalf("header frame: n=%d err=%v", n, err)
		}
		if err := h.Parse(f.Channel, f.Payload); err != nil {
			t.Fatal(err)
		}
		off += n
		f, n, err = ReadFrame(buf[off:], 131072)
		if err != nil || n == 0 || f.Type != FrameBody {
			t.Fatalf("body frame: n=%d err=%v", n, err)
		}
		sinkMethod, sinkBytes = m, f.Payload
	}
	parse() // warm up: the interner learns the strings

	d := sinkMethod.(*BasicDeliver)
	require.Equal(t, &BasicDeliver{ConsumerTag: "ctag-1", DeliveryTag: 42, Exchange: "events", RoutingKey: "order.created"}, d)
	require.Equal(t, body, sinkBytes)
	require.Equal(t, "application/json", string(h.Properties.ContentType))
	require.Equal(t, uint8(2), h.Properties.DeliveryMode)
	require.Equal(t, uint64(64), h.BodySize)

	allocs := testing.AllocsPerRun(1000, parse)
	require.Zero(t, allocs, "allocations per parsed delivery")
}

// TestAllocPublish: encoding basic.publish with its header and a 64-byte
// body into a reused buffer allocates nothing.
func TestAllocPublish(t *testing.T) {
	body := make([]byte, 64)
	props := allocProperties()
	pub := &BasicPublish{Exchange: "events", RoutingKey: "order.created", Mandatory: true}
	var buf []byte
	var err error
	publish := func() {
		buf, err = AppendMessage(buf[:0], 1, pub, props, body, 131072)
		if err != nil {
			t.Fatal(err)
		}
	}
	publish() // warm up: the buffer grows once

	frames := readAll(t, buf, 131072)
	require.Len(t, frames, 3)

	allocs := testing.AllocsPerRun(1000, publish)
	require.Zero(t, allocs, "allocations per published message")
}
