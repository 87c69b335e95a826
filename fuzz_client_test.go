package warren

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// FuzzClient drives the whole client over an in-memory pipe: a server
// completes the handshake and answers channel.open, then sends the fuzzed
// bytes, while the application declares, consumes, publishes with
// confirms and closes. Whatever the bytes, every call returns within its
// context, nothing panics, and the connection's goroutines end (the
// synctest bubble fails the run if any is left blocked).
func FuzzClient(f *testing.F) {
	seed := func(ms ...frames.Method) []byte {
		var b []byte
		for _, m := range ms {
			var err error
			b, err = frames.AppendMethod(b, 1, m)
			require.NoError(f, err)
		}
		return b
	}
	f.Add([]byte{})
	f.Add(seed(&frames.QueueDeclareOK{Queue: "q"}, &frames.BasicQosOK{}, &frames.BasicConsumeOK{ConsumerTag: "c"}))
	f.Add(seed(&frames.ChannelClose{ReplyCode: 404, ReplyText: "NOT_FOUND - no queue 'q'", ClassID: 50, MethodID: 10}))
	f.Add(seed(&frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1, RoutingKey: "q"}))
	f.Add([]byte{1, 0, 1, 0, 0, 0, 4, 0, 10, 0, 40, 0xce}) // a truncated method frame
	f.Fuzz(func(t *testing.T, data []byte) {
		// In a synctest bubble the timeouts below pass on a fake clock:
		// an execution costs CPU, not waiting.
		synctest.Test(t, func(t *testing.T) { fuzzClientOnce(t, data) })
	})
}

// fuzzClientOnce is one FuzzClient execution.
func fuzzClientOnce(t *testing.T, data []byte) {
	connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
		b := newScripted(t, server)
		if b.handshake(0) != nil {
			return
		}
		if b.answerChannel(false) != nil {
			return
		}
		_, _ = server.Write(data)
		// Drain what the client sends until it closes, answering its
		// connection.close so that Close can end cleanly.
		b.serveMethods(nil)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}, Heartbeat: -1})
	if err != nil {
		connector.Wait()
		return
	}
	ch, err := conn.Channel(ctx)
	if err == nil {
		short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 50*time.Millisecond) }
		c1, stop := short()
		_, _ = ch.QueueDeclare(c1, "q", QueueOptions{})
		stop()
		c2, stop := short()
		if cons, err := ch.Consume(c2, "q", ConsumeOptions{NoAck: true}); err == nil {
			select {
			case <-cons.Deliveries():
			case <-time.After(10 * time.Millisecond):
			}
		}
		stop()
		c3, stop := short()
		_, _ = ch.PublishWithConfirm(c3, "", "q", Publishing{Properties: proto.Properties{ContentType: "text/plain"}, Body: []byte("x")})
		stop()
	}
	closeCtx, stopClose := context.WithTimeout(ctx, 300*time.Millisecond)
	_ = conn.Close(closeCtx) // any outcome: the bytes may have broken the connection
	stopClose()
	select {
	case <-conn.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the connection's goroutines did not end")
	}
	connector.Wait()
}
