package bench

// Benchmarks of the sans-IO client machine (proto/statemachine) on its hot
// paths, with no sockets: the benchmark plays the broker, feeding server
// frames built with proto/frames and taking the machine's outbound bytes
// into a reused buffer, as the driver's reader and writer goroutines do.
//
//   - BenchmarkMachineDeliver: a no-ack consumer receiving messages (the
//     codec benchmarks' message: basic.deliver, a content header with
//     content-type, delivery-mode and a two-entry headers table, a 64-byte
//     body), fed in 64 KiB chunks like socket reads, events drained until
//     EventNone. One op is one delivery.
//   - BenchmarkMachineDeliverAck: the same with a manual-ack consumer that
//     acks every 64 deliveries with basic.ack multiple (Conn.Call).
//   - BenchmarkMachinePublish: Publish on a channel in confirm mode, the
//     outbound bytes taken after every publish, and a basic.ack multiple
//     from the broker every 64 publishes. One op is one publish (and its
//     share of the confirm). BenchmarkMachinePublishRef is the same with a
//     pointer ref given to every publish, as a client's confirm handle.
//   - BenchmarkMachinePublishManyOutstanding: 200,000 publishes
//     outstanding, then one basic.ack multiple settles them all. One op is
//     the whole batch; ns/publish is the cost per publish and confirm. The
//     confirm lists all 200,000 publishes in EventConfirm.Publishes, an
//     arena the machine grows once per batch and, being over its idle
//     limit, does not keep: one allocation per batch.
//
// machine_alloc_test.go turns the zero-allocation targets into tests.

import (
	"testing"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Machine benchmark parameters.
const (
	machineStreamMessages = 1024     // deliveries in the pre-encoded server stream
	machineReadSize       = 64 << 10 // bytes per Feed, like one socket read
	machineAckEvery       = 64       // publishes (or deliveries) per basic.ack multiple
	manyOutstanding       = 200_000  // publishes outstanding in BenchmarkMachinePublishManyOutstanding
	machineConsumerTag    = "amq.ctag-bench"
	machineQueue          = "orders.q"
	machineExchange       = "orders"
	machineRoutingKey     = "orders.created"
	machineBodySize       = 64
	machineStartEpoch     = 1714979289 // 2024-05-06T07:08:09Z, the simulated clock
	machineFrameMax       = frameMax   // negotiated frame_max (RabbitMQ's default)
	machineOutboundBound  = 1 << 20    // the rig fails if the machine queues more than this
)

// machineRig is a connected machine with one open channel, and the
// buffers a driver would reuse.
type machineRig struct {
	tb   testing.TB
	c    *statemachine.Conn
	ch   uint16
	now  time.Time
	in   []byte // scratch for frames fed by the rig
	out  []byte // outbound bytes, reused
	sent int    // outbound bytes taken so far
}

type rigOptions struct {
	confirm bool // put the channel in confirm mode
	consume bool // start a consumer
	noAck   bool // the consumer's NoAck
}

// newMachineRig builds a connected machine without sockets: Start, the
// server's connection.start (PLAIN), tune (frame_max 131072, no
// heartbeat) and open-ok, then a channel, optionally confirm mode and a
// consumer. Every step checks the events it causes; the outbound bytes are
// discarded.
func newMachineRig(tb testing.TB, opt rigOptions) *machineRig {
	tb.Helper()
	c, err := statemachine.NewConn(statemachine.Config{
		Auth:      []statemachine.Authenticator{statemachine.PlainAuth{Username: "guest", Password: "guest"}},
		Heartbeat: -1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	r := &machineRig{tb: tb, c: c, now: time.Unix(machineStartEpoch, 0)}
	c.Start(r.now)
	r.flush()
	r.serverSays(0, statemachine.EventNone, &frames.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: proto.Table{{Name: "product", Value: proto.String("RabbitMQ")}},
		Mechanisms:       "AMQPLAIN PLAIN", Locales: "en_US",
	})
	r.serverSays(0, statemachine.EventNone, &frames.ConnectionTune{ChannelMax: 2047, FrameMax: machineFrameMax, Heartbeat: 0})
	r.serverSays(0, statemachine.EventConnected, &frames.ConnectionOpenOK{})
	if c.State() != statemachine.StateOpen {
		tb.Fatalf("state %s after open-ok", c.State())
	}
	if r.ch, err = c.OpenChannel(); err != nil {
		tb.Fatal(err)
	}
	r.serverSays(r.ch, statemachine.EventChannelOpen, &frames.ChannelOpenOK{})
	if opt.confirm {
		r.call(&frames.ConfirmSelect{})
		r.serverSays(r.ch, statemachine.EventReply, &frames.ConfirmSelectOK{})
	}
	if opt.consume {
		r.call(&frames.BasicConsume{Queue: machineQueue, ConsumerTag: machineConsumerTag, NoAck: opt.noAck})
		r.serverSays(r.ch, statemachine.EventReply, &frames.BasicConsumeOK{ConsumerTag: machineConsumerTag})
	}
	r.sent = 0
	return r
}

// call sends a request on the rig's channel.
func (r *machineRig) call(m frames.Method) {
	r.tb.Helper()
	if _, err := r.c.Call(r.ch, m); err != nil {
		r.tb.Fatalf("Call %s: %v", m.Key(), err)
	}
	r.flush()
}

// serverSays feeds one method frame and requires exactly one event of
// kind want (none for EventNone).
func (r *machineRig) serverSays(ch uint16, want statemachine.EventKind, m frames.Method) {
	r.tb.Helper()
	var err error
	if r.in, err = frames.AppendMethod(r.in[:0], ch, m); err != nil {
		r.tb.Fatal(err)
	}
	if err := r.c.Feed(r.in); err != nil {
		r.tb.Fatalf("Feed %s: %v", m.Key(), err)
	}
	var got []statemachine.EventKind
	for e := r.c.NextEvent(); e.Kind != statemachine.EventNone; e = r.c.NextEvent() {
		got = append(got, e.Kind)
		if e.Err != nil {
			r.tb.Fatalf("after %s: %s event with error %v", m.Key(), e.Kind, e.Err)
		}
	}
	if (want == statemachine.EventNone && len(got) != 0) || (want != statemachine.EventNone && (len(got) != 1 || got[0] != want)) {
		r.tb.Fatalf("after %s: events %v, want %s (state %s, err %v)", m.Key(), got, want, r.c.State(), r.c.Err())
	}
	r.flush()
}

// flush takes the outbound bytes into the reused buffer, as a writer does.
func (r *machineRig) flush() {
	r.out = r.c.AppendOutbound(r.out[:0])
	r.sent += len(r.out)
}

// deliverRig feeds a pre-encoded stream of deliveries, one read-sized
// chunk at a time, wrapping around at its end.
type deliverRig struct {
	*machineRig
	stream  []byte
	off     int
	msgSize int // wire bytes of one message
	ack     frames.BasicAck
	unacked int
	noAck   bool
	lastTag uint64
	pooled  []byte // readAdopt's read buffer, between reads
}

// newDeliverRig returns a consumer (no-ack or manual ack) and a stream of
// machineStreamMessages deliveries to it, warmed by one pass over the
// stream (the parser has interned the names; the buffers have grown).
func newDeliverRig(tb testing.TB, noAck bool) *deliverRig {
	tb.Helper()
	r := &deliverRig{machineRig: newMachineRig(tb, rigOptions{consume: true, noAck: noAck}), noAck: noAck}
	b := body(machineBodySize)
	m := &frames.BasicDeliver{ConsumerTag: machineConsumerTag, Exchange: machineExchange, RoutingKey: machineRoutingKey}
	for i := range machineStreamMessages {
		m.DeliveryTag = uint64(i + 1)
		var err error
		if r.stream, err = frames.AppendMessage(r.stream, r.ch, m, &messageProps, b, machineFrameMax); err != nil {
			tb.Fatal(err)
		}
	}
	r.msgSize = len(r.stream) / machineStreamMessages
	for n := 0; n < 2*machineStreamMessages; {
		got, err := r.readOnce()
		if err != nil {
			tb.Fatal(err)
		}
		n += got
	}
	return r
}

// readOnce feeds the next chunk of the stream, drains the events and the
// outbound bytes, and returns how many deliveries it got.
func (r *deliverRig) readOnce() (int, error) {
	end := min(r.off+machineReadSize, len(r.stream))
	if err := r.c.Feed(r.stream[r.off:end]); err != nil {
		return 0, err
	}
	r.off = end
	if r.off == len(r.stream) {
		r.off = 0
	}
	return r.drain()
}

// drain takes the events, acking as a manual-ack consumer does, and the
// outbound bytes; it returns how many deliveries it got.
func (r *deliverRig) drain() (int, error) {
	n := 0
	for {
		e := r.c.NextEvent()
		if e.Kind == statemachine.EventNone {
			break
		}
		if e.Kind != statemachine.EventDelivery || len(e.Message.Body) != machineBodySize {
			return n, &rigError{kind: e.Kind, state: r.c.State(), err: e.Err}
		}
		n++
		if !r.noAck {
			r.lastTag = e.Message.DeliveryTag
			if r.unacked++; r.unacked == machineAckEvery {
				r.ack.DeliveryTag, r.ack.Multiple = r.lastTag, true
				if _, err := r.c.Call(r.ch, &r.ack); err != nil {
					return n, err
				}
				r.unacked = 0
			}
		}
	}
	r.out = r.c.AppendOutbound(r.out[:0])
	return n, nil
}

// alignInput feeds the stream up to the next message boundary, so that
// the machine holds no partial frame (readAdopt starts from there).
func (r *deliverRig) alignInput() error {
	if rem := r.off % r.msgSize; rem != 0 {
		end := r.off + r.msgSize - rem
		if err := r.c.Feed(r.stream[r.off:end]); err != nil {
			return err
		}
		r.off = end % len(r.stream)
	}
	_, err := r.drain()
	return err
}

// readAdopt is readOnce for a driver that pools its read buffers: a chunk
// of whole messages is read into the rig's pooled buffer, handed over with
// Adopt, and taken back with ReleaseInput once the events are drained.
// Every chunk ends at a message boundary, so the machine never holds a
// partial frame and always gives its buffer back.
func (r *deliverRig) readAdopt() (int, error) {
	if r.c.HasInput() {
		return 0, &seqError{got: 1, want: 0, what: "input held before a read"}
	}
	end := min(r.off+machineReadSize/r.msgSize*r.msgSize, len(r.stream))
	buf := append(r.pooled[:0], r.stream[r.off:end]...)
	r.pooled = nil
	if err := r.c.Adopt(buf); err != nil {
		return 0, err
	}
	r.off = end % len(r.stream)
	n, err := r.drain()
	if err != nil {
		return n, err
	}
	if r.pooled = r.c.ReleaseInput(); r.pooled == nil {
		return n, &seqError{got: 0, want: 1, what: "input buffers released after whole messages"}
	}
	return n, nil
}

// rigError reports an unexpected event.
type rigError struct {
	kind  statemachine.EventKind
	state statemachine.State
	err   error
}

func (e *rigError) Error() string {
	s := "unexpected " + e.kind.String() + " event in state " + e.state.String()
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func BenchmarkMachineDeliver(b *testing.B) { benchmarkMachineDeliver(b, true) }

func BenchmarkMachineDeliverAck(b *testing.B) { benchmarkMachineDeliver(b, false) }

func benchmarkMachineDeliver(b *testing.B, noAck bool) {
	r := newDeliverRig(b, noAck)
	b.SetBytes(int64(r.msgSize))
	b.ReportAllocs()
	b.ResetTimer()
	delivered := 0
	for delivered < b.N {
		n, err := r.readOnce()
		if err != nil {
			b.Fatal(err)
		}
		delivered += n
	}
	b.StopTimer()
	b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "msgs/s")
}

// publishRig publishes on a channel in confirm mode and plays the broker's
// basic.ack multiple every machineAckEvery publishes.
type publishRig struct {
	*machineRig
	method    frames.BasicPublish
	body      []byte
	ref       any // given to every Publish: nil, or a pointer
	ack       frames.BasicAck
	ackBuf    []byte
	seq       uint64 // last publish sequence number
	confirmed uint64 // highest tag the machine reported confirmed
	msgSize   int
}

// confirmHandle stands for a client's per-publish confirm handle.
type confirmHandle struct{ done bool }

// newPublishRig returns a warmed publisher; with ref, every publish gets
// the same *confirmHandle as its ref, and the confirms must hand it back.
func newPublishRig(tb testing.TB, ref bool) *publishRig {
	tb.Helper()
	r := &publishRig{
		machineRig: newMachineRig(tb, rigOptions{confirm: true}),
		method:     frames.BasicPublish{Exchange: machineExchange, RoutingKey: machineRoutingKey},
		body:       body(machineBodySize),
	}
	if ref {
		r.ref = &confirmHandle{}
	}
	if err := r.publish(); err != nil {
		tb.Fatal(err)
	}
	r.msgSize = len(r.out)
	for range 4 * machineAckEvery {
		if err := r.publish(); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

// publish publishes one message, takes the outbound bytes, and every
// machineAckEvery publishes feeds basic.ack multiple for the last one and
// drains the confirm.
func (r *publishRig) publish() error {
	seq, err := r.c.Publish(r.ch, &r.method, &messageProps, r.body, r.ref)
	if err != nil {
		return err
	}
	if seq != r.seq+1 {
		return &seqError{got: seq, want: r.seq + 1}
	}
	r.seq = seq
	r.out = r.c.AppendOutbound(r.out[:0])
	if seq%machineAckEvery == 0 {
		return r.confirm(seq)
	}
	return nil
}

// confirm feeds basic.ack multiple for tag and drains the events: one
// EventConfirm listing every publish since the last confirm, with its ref.
func (r *publishRig) confirm(tag uint64) error {
	r.ack.DeliveryTag, r.ack.Multiple = tag, true
	var err error
	if r.ackBuf, err = frames.AppendMethod(r.ackBuf[:0], r.ch, &r.ack); err != nil {
		return err
	}
	if err := r.c.Feed(r.ackBuf); err != nil {
		return err
	}
	for {
		e := r.c.NextEvent()
		if e.Kind == statemachine.EventNone {
			break
		}
		if e.Kind != statemachine.EventConfirm || !e.Ack || e.DeliveryTag != tag {
			return &rigError{kind: e.Kind, state: r.c.State(), err: e.Err}
		}
		pubs := e.Publishes
		if n := uint64(len(pubs)); n != tag-r.confirmed {
			return &seqError{got: n, want: tag - r.confirmed, what: "publishes settled by a multiple ack"}
		}
		if first, last := pubs[0], pubs[len(pubs)-1]; first.Seq != r.confirmed+1 || last.Seq != tag || first.Ref != r.ref || last.Ref != r.ref {
			return &seqError{got: last.Seq, want: tag, what: "publishes (or refs) settled by a multiple ack"}
		}
		r.confirmed = e.DeliveryTag
	}
	if n := r.c.Unconfirmed(r.ch); n != 0 {
		return &seqError{got: uint64(n), want: 0, what: "unconfirmed after a multiple ack"}
	}
	r.out = r.c.AppendOutbound(r.out) // nothing, normally: a confirm needs no answer
	return nil
}

type seqError struct {
	got, want uint64
	what      string
}

func (e *seqError) Error() string {
	what := e.what
	if what == "" {
		what = "publish sequence number"
	}
	return what + ": got " + itoa(e.got) + ", want " + itoa(e.want)
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			return string(b[i:])
		}
	}
}

func BenchmarkMachinePublish(b *testing.B) { benchmarkMachinePublish(b, false) }

func BenchmarkMachinePublishRef(b *testing.B) { benchmarkMachinePublish(b, true) }

func benchmarkMachinePublish(b *testing.B, ref bool) {
	r := newPublishRig(b, ref)
	b.SetBytes(int64(r.msgSize))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.publish(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMachinePublishManyOutstanding publishes manyOutstanding messages
// without a confirm, then settles them all with one basic.ack multiple: the
// per-publish cost must not grow with the number outstanding.
func BenchmarkMachinePublishManyOutstanding(b *testing.B) {
	r := newPublishRig(b, false)
	if err := r.confirm(r.seq); err != nil { // settle the warm-up publishes
		b.Fatal(err)
	}
	batch := func() error {
		for range manyOutstanding {
			seq, err := r.c.Publish(r.ch, &r.method, &messageProps, r.body, r.ref)
			if err != nil {
				return err
			}
			r.seq = seq
			if seq%machineAckEvery == 0 {
				r.out = r.c.AppendOutbound(r.out[:0])
			}
		}
		r.out = r.c.AppendOutbound(r.out[:0])
		if n := r.c.Unconfirmed(r.ch); n != manyOutstanding {
			return &seqError{got: uint64(n), want: manyOutstanding, what: "unconfirmed before the ack"}
		}
		return r.confirm(r.seq)
	}
	if err := batch(); err != nil { // warm up: the confirm ring grows once
		b.Fatal(err)
	}
	b.SetBytes(int64(r.msgSize) * manyOutstanding)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := batch(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perPublish := float64(b.Elapsed().Nanoseconds()) / float64(b.N*manyOutstanding)
	b.ReportMetric(perPublish, "ns/publish")
	b.ReportMetric(1e9/perPublish, "msgs/s")
}

// TestMachineRig checks that the rigs run what they claim to, with every
// `go test` (the race detector included): deliveries arrive in order with
// their content, manual acks go out, publishes are numbered and confirmed,
// and the outbound bytes stay bounded.
func TestMachineRig(t *testing.T) {
	for _, noAck := range []bool{true, false} {
		r := newDeliverRig(t, noAck)
		if r.msgSize < 200 {
			t.Fatalf("message of %d wire bytes", r.msgSize)
		}
		var tags []uint64
		// Feed one chunk by hand and look at every event.
		if err := r.c.Feed(r.stream[:3*r.msgSize+5]); err != nil {
			t.Fatal(err)
		}
		for e := r.c.NextEvent(); e.Kind != statemachine.EventNone; e = r.c.NextEvent() {
			if e.Kind != statemachine.EventDelivery {
				t.Fatalf("%s event, want delivery", e.Kind)
			}
			m := e.Message
			if m.ConsumerTag != machineConsumerTag || m.Exchange != machineExchange || m.RoutingKey != machineRoutingKey ||
				string(m.Properties.ContentType) != "application/json" || m.Properties.DeliveryMode != proto.Persistent ||
				string(m.Body) != string(body(machineBodySize)) {
				t.Fatalf("delivery decoded wrong: %+v", m)
			}
			hdrs, err := m.Properties.Headers.Decode()
			if err != nil || len(hdrs) != 2 {
				t.Fatalf("headers %v, %v", hdrs, err)
			}
			tags = append(tags, m.DeliveryTag)
		}
		if len(tags) != 3 || tags[0] != 1 || tags[2] != 3 {
			t.Fatalf("delivery tags %v, want [1 2 3]", tags)
		}
		r.off = 3*r.msgSize + 5
		r.unacked = 0
		total, acked := 3, uint64(0)
		for total < 10*machineStreamMessages {
			n, err := r.readOnce()
			if err != nil {
				t.Fatal(err)
			}
			total += n
			if r.c.OutboundLen() != 0 || len(r.out) > machineOutboundBound {
				t.Fatalf("outbound %d + %d bytes", r.c.OutboundLen(), len(r.out))
			}
			for out := r.out; len(out) > 0; {
				f, n, err := frames.ReadFrame(out, 0)
				if err != nil || n == 0 || f.Type != frames.FrameMethod {
					t.Fatalf("bad outbound bytes %x (%v)", out, err)
				}
				m, err := frames.DecodeMethod(f.Channel, f.Payload)
				ack, ok := m.(*frames.BasicAck)
				if err != nil || !ok || !ack.Multiple || noAck {
					t.Fatalf("wrote %v (%v); want a basic.ack multiple only with manual acks", m, err)
				}
				acked++
				out = out[n:]
			}
		}
		if total != 10*machineStreamMessages {
			t.Fatalf("%d deliveries, want %d", total, 10*machineStreamMessages)
		}
		if want := uint64(total-3) / machineAckEvery; !noAck && acked != want {
			t.Fatalf("%d acks for %d deliveries, want %d", acked, total-3, want)
		}

		// The same stream through pooled read buffers and Adopt.
		if err := r.alignInput(); err != nil {
			t.Fatal(err)
		}
		for total := 0; total < 2*machineStreamMessages; {
			n, err := r.readAdopt()
			if err != nil {
				t.Fatal(err)
			}
			if n != machineReadSize/r.msgSize && r.off != 0 {
				t.Fatalf("%d deliveries from an adopted read, want %d", n, machineReadSize/r.msgSize)
			}
			total += n
		}
	}

	p := newPublishRig(t, true)
	start := p.seq
	for range 10 * machineAckEvery {
		if err := p.publish(); err != nil {
			t.Fatal(err)
		}
		f, n, err := frames.ReadFrame(p.out, 0)
		if err != nil || n == 0 || f.Type != frames.FrameMethod || len(p.out) != p.msgSize {
			t.Fatalf("publish wrote %d bytes (%v), want %d", len(p.out), err, p.msgSize)
		}
	}
	if p.seq != start+10*machineAckEvery || p.confirmed != p.seq-p.seq%machineAckEvery {
		t.Fatalf("seq %d, confirmed %d", p.seq, p.confirmed)
	}
}
