package warren

// Benchmarks of what Config.Observer costs: none against a no-op
// observer, on publishes and on deliveries with their acks, against a
// scripted broker on loopback TCP that allocates nothing once serving.
// bench/README.md records figures.

import (
	"context"
	"testing"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// benchObservers are the cases each benchmark runs.
var benchObservers = []struct {
	name string
	obs  Observer
}{{"none", nil}, {"nop", NopObserver{}}}

// BenchmarkObserverPublish: Publish of a 64-byte body with a content type
// and a two-entry headers table, outside confirm mode.
func BenchmarkObserverPublish(b *testing.B) {
	for _, bc := range benchObservers {
		b.Run(bc.name, func(b *testing.B) {
			ctx, _, ch := openAllocPeer(b, Config{Observer: bc.obs}, false, nil)
			msg := benchPublishing()
			b.ReportAllocs()
			for b.Loop() {
				if err := ch.Publish(ctx, "", "q", msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkObserverPublishConfirm: PublishWithConfirm of the same
// message, waiting for every 64th publish's confirm (the scripted broker
// acks each).
func BenchmarkObserverPublishConfirm(b *testing.B) {
	for _, bc := range benchObservers {
		b.Run(bc.name, func(b *testing.B) {
			ctx, _, ch := openAllocPeer(b, Config{Observer: bc.obs}, true, nil)
			msg := benchPublishing()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				cf, err := ch.PublishWithConfirm(ctx, "", "q", msg)
				if err != nil {
					b.Fatal(err)
				}
				if n++; n%64 == 0 {
					if _, err := cf.Wait(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkObserverDeliverAck: deliveries of an 8-byte body to a
// manual-ack consumer, received from Deliveries and acked one by one; the
// scripted broker sends them 64 at a time. One op is one delivery and its
// ack.
func BenchmarkObserverDeliverAck(b *testing.B) {
	for _, bc := range benchObservers {
		b.Run(bc.name, func(b *testing.B) {
			deliver := make(chan int)
			ctx, _, ch := openAllocPeer(b, Config{Observer: bc.obs}, false, deliver)
			cons, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "c"})
			if err != nil {
				b.Fatal(err)
			}
			const batch = 64
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n%batch == 0 {
					deliver <- batch
				}
				n++
				d := <-cons.Deliveries()
				if err := d.Ack(false); err != nil {
					b.Fatal(err)
				}
			}
			for ; n%batch != 0; n++ { // take the rest of the last batch
				<-cons.Deliveries()
			}
		})
	}
}

// BenchmarkObserverDeliverHandler: deliveries of an 8-byte body to a
// no-ack consumer with a ConsumeOptions.Handler (no goroutine hand-off, no
// ack: the client's cheapest delivery path); the scripted broker sends
// them 256 at a time. One op is one delivery.
func BenchmarkObserverDeliverHandler(b *testing.B) {
	for _, bc := range benchObservers {
		b.Run(bc.name, func(b *testing.B) {
			deliver := make(chan int)
			ctx, _, ch := openAllocPeer(b, Config{Observer: bc.obs}, false, deliver)
			const batch = 256
			got := make(chan struct{}, 1)
			n := 0
			_, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "c", NoAck: true, Handler: func(Delivery) {
				if n++; n%batch == 0 {
					got <- struct{}{}
				}
			}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%batch == 0 {
					if i > 0 {
						<-got
					}
					deliver <- batch
				}
				i++
			}
			<-got // the last batch, whole
		})
	}
}

func benchPublishing() Publishing {
	return Publishing{
		Properties: proto.Properties{ContentType: "application/json", Headers: proto.Table{
			{Name: "a", Value: proto.String("b")}, {Name: "n", Value: proto.Int64(7)},
		}},
		Body: make([]byte, 64),
	}
}

// openAllocPeer opens a connection and a channel (in confirm mode when
// confirm is set) to a scripted broker that, once serving, allocates
// nothing: it acks every publish in confirm mode, and sends a delivery to
// consumer "c" (8-byte body, no properties) for every value on deliver:
// as many as the value says.
func openAllocPeer(t testing.TB, cfg Config, confirm bool, deliver chan int) (context.Context, *Connection, *Channel) {
	t.Helper()
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(confirm) != nil {
			return
		}
		if deliver != nil {
			for consuming := false; !consuming; { // basic.qos (for manual acks), basic.consume
				m, _, err := b.readMethod()
				if err != nil {
					return
				}
				switch m.(type) {
				case *frames.BasicQos:
					b.send(1, &frames.BasicQosOK{})
				case *frames.BasicConsume:
					b.send(1, &frames.BasicConsumeOK{ConsumerTag: "c"})
					consuming = true
				}
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				method := frames.BasicDeliver{ConsumerTag: "c", RoutingKey: "q"}
				body := make([]byte, 8)
				out := make([]byte, 0, 64<<10)
				for {
					var n int
					select {
					case n = <-deliver:
					case <-stop:
						return
					}
					out = out[:0]
					for range n {
						method.DeliveryTag++
						out, _ = frames.AppendMessage(out, 1, &method, nil, body, 131072)
					}
					if _, err := b.conn.Write(out); err != nil {
						return
					}
				}
			}()
		}
		b.serveRaw(confirm)
	})
	return openScriptedWith(t, nc, confirm, cfg)
}

// serveRaw reads the client's frames without allocating: it acks each
// basic.publish when ack is set, answers connection.close, and ignores
// everything else.
func (b *scriptedBroker) serveRaw(ack bool) {
	buf := make([]byte, 1<<20)
	end := copy(buf, b.buf) // buf[off:end] holds what is not parsed yet
	off := 0
	var confirm frames.BasicAck
	out := make([]byte, 0, 64)
	for {
		f, n, err := frames.ReadFrame(buf[off:end], 0)
		if err != nil {
			return
		}
		if n == 0 {
			if off > 0 { // make room: move the partial frame to the front
				end = copy(buf, buf[off:end])
				off = 0
			}
			if end == len(buf) {
				return // a frame larger than the buffer: not sent by these tests
			}
			m, err := b.conn.Read(buf[end:])
			end += m
			if err != nil {
				return
			}
			continue
		}
		off += n
		if f.Type == frames.FrameMethod && len(f.Payload) >= 4 {
			key := frames.MethodKey(uint32(f.Payload[0])<<24 | uint32(f.Payload[1])<<16 | uint32(f.Payload[2])<<8 | uint32(f.Payload[3]))
			switch {
			case key == frames.MethodBasicPublish && ack:
				confirm.DeliveryTag++
				out, _ = frames.AppendMethod(out[:0], f.Channel, &confirm)
				if _, err := b.conn.Write(out); err != nil {
					return
				}
			case key == frames.MethodConnectionClose:
				b.send(0, &frames.ConnectionCloseOK{})
				return
			}
		}
	}
}
