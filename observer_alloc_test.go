//go:build !race

// The race detector allocates on its own account, so these tests only run
// without it (CI: go test -run Alloc ./...).

package warren

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/frames"
)

// TestAllocClientPaths measures the client's allocations per message
// against a scripted broker that does not allocate once serving: with no
// Config.Observer, a publish, a delivery and its ack allocate nothing, and
// a publish with a confirm only its handle (the Confirmation and its
// channel).
func TestAllocClientPaths(t *testing.T) {
	testAllocClientPaths(t, Config{}, 0, 2, 0)
}

// TestAllocClientPathsNopObserver pins what a no-op Observer costs: the
// PublishInfo handed to the Publish hook (one allocation per publish) and
// nothing per delivery and ack.
func TestAllocClientPathsNopObserver(t *testing.T) {
	testAllocClientPaths(t, Config{Observer: NopObserver{}}, 1, 3, 0)
}

// testAllocClientPaths requires the allocations per publish, per
// confirmed publish and per delivery with its ack to be those given.
func testAllocClientPaths(t *testing.T, cfg Config, publishAllocs, confirmAllocs, deliverAllocs float64) {
	t.Run("publish", func(t *testing.T) {
		ctx, _, ch := openAllocPeer(t, cfg, false, nil)
		msg := Publishing{Body: make([]byte, 64)}
		publish := func() {
			if err := ch.Publish(ctx, "", "q", msg); err != nil {
				t.Fatal(err)
			}
		}
		publish()
		require.Equal(t, publishAllocs, testing.AllocsPerRun(2000, publish), "allocations per publish")
	})
	t.Run("publish with confirm", func(t *testing.T) {
		ctx, _, ch := openAllocPeer(t, cfg, true, nil)
		msg := Publishing{Body: make([]byte, 64)}
		publish := func() {
			cf, err := ch.PublishWithConfirm(ctx, "", "q", msg)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := cf.Wait(ctx); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
		publish()
		require.Equal(t, confirmAllocs, testing.AllocsPerRun(1000, publish),
			"allocations per confirmed publish (without an observer: the Confirmation and its channel)")
	})
	t.Run("delivery and ack", func(t *testing.T) {
		deliver := make(chan struct{})
		ctx, _, ch := openAllocPeer(t, cfg, false, deliver)
		cons, err := ch.Consume(ctx, "q", ConsumeOptions{ConsumerTag: "c"})
		require.NoError(t, err)
		receive := func() {
			deliver <- struct{}{}
			d := <-cons.Deliveries()
			if err := d.Ack(false); err != nil {
				t.Fatal(err)
			}
		}
		for range 10 {
			receive()
		}
		require.Equal(t, deliverAllocs, testing.AllocsPerRun(2000, receive), "allocations per delivery and ack")
	})
}

// openAllocPeer opens a connection and a channel (in confirm mode when
// confirm is set) to a scripted broker that, once serving, allocates
// nothing: it acks every publish in confirm mode, and sends a delivery to
// consumer "c" (8-byte body, no properties) for every value on deliver.
func openAllocPeer(t *testing.T, cfg Config, confirm bool, deliver chan struct{}) (context.Context, *Connection, *Channel) {
	t.Helper()
	nc := tcpScripted(t, func(b *scriptedBroker) {
		if b.handshake(0) != nil || b.answerChannel(confirm) != nil {
			return
		}
		if deliver != nil {
			if _, _, err := b.readMethod(); err != nil { // basic.qos
				return
			}
			b.send(1, &frames.BasicQosOK{})
			if _, _, err := b.readMethod(); err != nil { // basic.consume
				return
			}
			b.send(1, &frames.BasicConsumeOK{ConsumerTag: "c"})
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				method := frames.BasicDeliver{ConsumerTag: "c", RoutingKey: "q"}
				body := make([]byte, 8)
				out := make([]byte, 0, 4096)
				for {
					select {
					case <-deliver:
					case <-stop:
						return
					}
					method.DeliveryTag++
					out, _ = frames.AppendMessage(out[:0], 1, &method, nil, body, 131072)
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
	buf := make([]byte, 0, 1<<20)
	buf = append(buf, b.buf...)
	var confirm frames.BasicAck
	out := make([]byte, 0, 64)
	for {
		f, n, err := frames.ReadFrame(buf, 0)
		if err != nil {
			return
		}
		if n == 0 {
			if len(buf) == cap(buf) {
				return // a frame larger than the buffer: not sent by these tests
			}
			m, err := b.conn.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err != nil {
				return
			}
			continue
		}
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
		rest := copy(buf, buf[n:])
		buf = buf[:rest]
	}
}
