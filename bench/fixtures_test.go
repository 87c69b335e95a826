package bench

import (
	"errors"
	"testing"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// frameMax is RabbitMQ's default frame_max: every body here fits one frame.
const frameMax = 131072

// messagesPerBuffer is how many messages a parse benchmark's buffer holds
// before it starts over from the front.
const messagesPerBuffer = 256

// messageProps are the properties of every benchmark message.
var messageProps = proto.Properties{
	ContentType:  "application/json",
	DeliveryMode: proto.Persistent,
	Headers: proto.Table{
		{Name: "x-request-id", Value: proto.String("7b0d5f3e-2c1a-4e8b-9a61-0f3c2d4b5e6f")},
		{Name: "x-retry-count", Value: proto.Int32(2)},
	},
}

// headersTable is a realistic headers table: eight fields of mixed kinds,
// with an array and a nested table like RabbitMQ's x-death entries.
var headersTable = proto.Table{
	{Name: "content-source", Value: proto.String("billing-service")},
	{Name: "x-request-id", Value: proto.String("7b0d5f3e-2c1a-4e8b-9a61-0f3c2d4b5e6f")},
	{Name: "x-retry-count", Value: proto.Int32(2)},
	{Name: "x-first-seen", Value: proto.Timestamp(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))},
	{Name: "x-priority-boost", Value: proto.Bool(true)},
	{Name: "x-amount", Value: proto.DecimalValue(proto.Decimal{Scale: 2, Value: 129999})},
	{Name: "x-tags", Value: proto.ArrayValue(proto.String("eu"), proto.String("vip"), proto.Int64(7))},
	{Name: "x-death", Value: proto.TableValue(proto.Table{
		{Name: "count", Value: proto.Int64(1)},
		{Name: "reason", Value: proto.String("expired")},
		{Name: "queue", Value: proto.String("orders.retry")},
		{Name: "time", Value: proto.Timestamp(time.Date(2024, 5, 6, 7, 9, 0, 0, time.UTC))},
	})},
}

// body returns an n-byte message body.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "{\"order\":12345,\"items\":[]}"[i%26]
	}
	return b
}

// deliverStream returns a buffer of messagesPerBuffer basic.deliver
// messages with bodySize-byte bodies, as a broker sends them, and the wire
// size of one message.
func deliverStream(tb testing.TB, bodySize int) (buf []byte, size int) {
	tb.Helper()
	b := body(bodySize)
	for i := range messagesPerBuffer {
		m := &frames.BasicDeliver{
			ConsumerTag: "amq.ctag-bench", DeliveryTag: uint64(i + 1),
			Exchange: "orders", RoutingKey: "orders.created",
		}
		var err error
		if buf, err = frames.AppendMessage(buf, 1, m, &messageProps, b, frameMax); err != nil {
			tb.Fatal(err)
		}
	}
	return buf, len(buf) / messagesPerBuffer
}

// errIncomplete reports a message cut short; the fixtures never are.
var errIncomplete = errors.New("incomplete message in the benchmark buffer")

// messageParser parses delivered messages out of a buffer, one per call,
// starting over at the front when it reaches the end.
type messageParser struct {
	buf    []byte
	off    int
	p      frames.Parser
	header frames.ContentHeader
	body   []byte // the last message's body; aliases buf
	tag    uint64 // the last message's delivery tag
}

// next parses the next message: three frames, the method, the header.
func (mp *messageParser) next() error {
	if mp.off == len(mp.buf) {
		mp.off = 0
	}
	b := mp.buf[mp.off:]
	f, n, err := frames.ReadFrame(b, frameMax)
	if err != nil {
		return err
	}
	if n == 0 || f.Type != frames.FrameMethod {
		return errIncomplete
	}
	m, err := mp.p.ParseMethod(f.Channel, f.Payload)
	if err != nil {
		return err
	}
	if d, ok := m.(*frames.BasicDeliver); ok {
		mp.tag = d.DeliveryTag
	}
	off := n
	if f, n, err = frames.ReadFrame(b[off:], frameMax); err != nil {
		return err
	}
	if n == 0 || f.Type != frames.FrameHeader {
		return errIncomplete
	}
	if err := mp.header.Parse(f.Channel, f.Payload); err != nil {
		return err
	}
	off += n
	if f, n, err = frames.ReadFrame(b[off:], frameMax); err != nil {
		return err
	}
	if n == 0 || f.Type != frames.FrameBody || uint64(len(f.Payload)) != mp.header.BodySize {
		return errIncomplete
	}
	mp.body = f.Payload
	mp.off += off + n
	return nil
}

// newMessageParser returns a parser over a deliverStream buffer, warmed by
// one pass over it (so the Parser has interned the names), and the wire
// size of one message.
func newMessageParser(tb testing.TB, bodySize int) (*messageParser, int) {
	tb.Helper()
	buf, size := deliverStream(tb, bodySize)
	mp := &messageParser{buf: buf}
	for i := range messagesPerBuffer {
		if err := mp.next(); err != nil {
			tb.Fatal(err)
		}
		if mp.tag != uint64(i+1) || len(mp.body) != bodySize || string(mp.header.Properties.ContentType) != "application/json" {
			tb.Fatalf("message %d parsed wrong: tag %d, %d-byte body, content-type %q",
				i, mp.tag, len(mp.body), mp.header.Properties.ContentType)
		}
	}
	if mp.off != len(buf) {
		tb.Fatalf("parsed %d of %d bytes", mp.off, len(buf))
	}
	return mp, size
}

// publisher appends basic.publish messages into a reused buffer.
type publisher struct {
	buf    []byte
	method frames.BasicPublish
	body   []byte
}

// newPublisher returns a publisher with a 64-byte body, its buffer already
// grown by one publish, and the wire size of one message.
func newPublisher(tb testing.TB) (*publisher, int) {
	tb.Helper()
	pb := &publisher{
		method: frames.BasicPublish{Exchange: "orders", RoutingKey: "orders.created"},
		body:   body(64),
	}
	if err := pb.publish(); err != nil {
		tb.Fatal(err)
	}
	return pb, len(pb.buf)
}

// publish encodes one message over the previous one.
func (pb *publisher) publish() error {
	var err error
	pb.buf, err = frames.AppendMessage(pb.buf[:0], 1, &pb.method, &messageProps, pb.body, frameMax)
	return err
}
