package warren

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// scriptedBroker plays the server side of the handshake over a netpipe and
// then lets a test script the rest: faults a real broker will not produce.
type scriptedBroker struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
}

func (b *scriptedBroker) readFrame() (frames.Frame, error) {
	tmp := make([]byte, 4096)
	for {
		f, n, err := frames.ReadFrame(b.buf, 0)
		if err != nil {
			return frames.Frame{}, err
		}
		if n > 0 {
			f.Payload = append([]byte(nil), f.Payload...)
			b.buf = b.buf[n:]
			return f, nil
		}
		m, err := b.conn.Read(tmp)
		b.buf = append(b.buf, tmp[:m]...)
		if err != nil {
			return frames.Frame{}, err
		}
	}
}

// readMethod returns the next method frame, skipping heartbeats (counted).
func (b *scriptedBroker) readMethod() (frames.Method, int, error) {
	beats := 0
	for {
		f, err := b.readFrame()
		if err != nil {
			return nil, beats, err
		}
		if f.Type == frames.FrameHeartbeat {
			beats++
			continue
		}
		if f.Type != frames.FrameMethod {
			continue
		}
		m, err := frames.DecodeMethod(f.Channel, f.Payload)
		return m, beats, err
	}
}

func (b *scriptedBroker) send(ch uint16, m frames.Method) {
	out, err := frames.AppendMethod(nil, ch, m)
	require.NoError(b.t, err)
	_, _ = b.conn.Write(out)
}

// handshake answers the client's handshake, proposing heartbeat seconds.
func (b *scriptedBroker) handshake(heartbeat uint16) error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(b.conn, hdr); err != nil {
		return err
	}
	b.send(0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
		ServerProperties: proto.Table{{Name: "product", Value: proto.String("scripted")}}})
	if _, _, err := b.readMethod(); err != nil { // start-ok
		return err
	}
	b.send(0, &frames.ConnectionTune{ChannelMax: 64, FrameMax: 131072, Heartbeat: heartbeat})
	if _, _, err := b.readMethod(); err != nil { // tune-ok
		return err
	}
	if _, _, err := b.readMethod(); err != nil { // open
		return err
	}
	b.send(0, &frames.ConnectionOpenOK{})
	return nil
}

// openChannel answers channel.open and, if confirm, confirm.select.
func (b *scriptedBroker) answerChannel(confirm bool) error {
	m, _, err := b.readMethod()
	if err != nil {
		return err
	}
	b.send(1, &frames.ChannelOpenOK{})
	_ = m
	if confirm {
		if _, _, err := b.readMethod(); err != nil {
			return err
		}
		b.send(1, &frames.ConfirmSelectOK{})
	}
	return nil
}

// serveMethods hands each method the client sends to on, until the
// client's connection.close, which it answers with close-ok (then it
// drains the stream until the client closes it), or the stream's end.
func (b *scriptedBroker) serveMethods(on func(m frames.Method)) {
	for {
		m, _, err := b.readMethod()
		if err != nil {
			return
		}
		if _, ok := m.(*frames.ConnectionClose); ok {
			b.send(0, &frames.ConnectionCloseOK{})
			_, _ = io.Copy(io.Discard, b.conn)
			return
		}
		if on != nil {
			on(m)
		}
	}
}

func newScripted(t testing.TB, conn net.Conn) *scriptedBroker {
	return &scriptedBroker{t: t, conn: conn}
}

// A broker that goes silent after the handshake is declared dead within
// HeartbeatMisses intervals (plus one tick of half an interval), and every
// waiting call returns. No test sleeps: the bubble's clock is fake.
func TestDriverSilentPeerDetected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = 2 * time.Second
		release := make(chan struct{})
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(uint16(hb/time.Second)) != nil {
				return
			}
			_ = b.answerChannel(false)
			// Go silent, but keep draining what the client sends.
			go func() { _, _ = io.Copy(io.Discard, server) }()
			<-release
		}}
		defer connector.Wait()
		defer close(release)

		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)
		start := time.Now()

		// A request that will never be answered.
		errc := make(chan error, 1)
		go func() {
			_, err := ch.QueueDeclare(ctx, "q", QueueOptions{})
			errc <- err
		}()
		<-conn.Done()
		elapsed := time.Since(start)
		require.ErrorIs(t, conn.Err(), ErrHeartbeatTimeout)
		require.LessOrEqual(t, elapsed, 2*hb+hb, "detected within the configured intervals")
		require.GreaterOrEqual(t, elapsed, 2*hb-hb/2)
		err = <-errc
		require.ErrorIs(t, err, ErrHeartbeatTimeout)
		require.False(t, conn.IsAlive())
		require.NoError(t, conn.Close(ctx))
	})
}

// A broker that stops reading in the middle of a large publish: the
// writer is stuck in Write, yet the heartbeat timer still runs (a timer
// passes the time in while the write blocks), the connection is declared
// dead, and the publish's confirmation reports that it may have been sent.
func TestDriverPeerStopsReadingMidPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = 2 * time.Second
		release := make(chan struct{})
		connector := &netpipe.Connector{Options: netpipe.Options{BufferSize: 16 << 10}, Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(uint16(hb/time.Second)) != nil {
				return
			}
			_ = b.answerChannel(true)
			<-release // stop reading and writing
		}}
		defer connector.Wait()
		defer close(release)

		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)
		require.NoError(t, ch.ConfirmSelect(ctx))
		start := time.Now()
		cf, err := ch.PublishWithConfirm(ctx, "", "q", Publishing{Body: make([]byte, 512<<10)})
		require.NoError(t, err)
		acked, err := cf.Wait(ctx)
		elapsed := time.Since(start)
		require.False(t, acked)
		require.ErrorIs(t, err, ErrMaybeSent)
		require.ErrorIs(t, err, ErrHeartbeatTimeout)
		require.LessOrEqual(t, elapsed, 3*hb)

		// A publish waiting for room fails rather than hanging.
		err = ch.Publish(ctx, "", "q", Publishing{Body: []byte("x")})
		require.Error(t, err)
		require.NoError(t, conn.Close(ctx))
	})
}

// Every blocking call returns when its context ends, even when the broker
// never answers.
func TestDriverContextBoundsWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(0) != nil {
				return
			}
			_ = b.answerChannel(true)
			go func() { _, _ = io.Copy(io.Discard, server) }()
			<-release
		}}
		defer connector.Wait()
		defer close(release)

		conn, err := Connect(context.Background(), connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		ch, err := conn.Channel(context.Background())
		require.NoError(t, err)
		require.NoError(t, ch.ConfirmSelect(context.Background()))

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = ch.QueueDeclare(ctx, "q", QueueOptions{})
		require.ErrorIs(t, err, context.DeadlineExceeded)

		cf, err := ch.PublishWithConfirm(context.Background(), "", "q", Publishing{Body: []byte("x")})
		require.NoError(t, err)
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		_, err = cf.Wait(ctx2)
		require.ErrorIs(t, err, context.DeadlineExceeded)

		// Close gives up on the close-ok when its context ends.
		ctx3, cancel3 := context.WithTimeout(context.Background(), time.Second)
		defer cancel3()
		err = conn.Close(ctx3)
		require.True(t, err == nil || errors.Is(err, context.DeadlineExceeded), "close: %v", err)
		<-conn.Done()
		_, err = cf.Wait(context.Background())
		require.ErrorIs(t, err, ErrMaybeSent)
	})
}

// channel.flow from the broker pauses publishing on the channel: publishes
// wait (honouring their context) until flow resumes.
func TestDriverChannelFlowPausesPublishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resume := make(chan struct{})
		published := make(chan string, 4)
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(0) != nil || b.answerChannel(false) != nil {
				return
			}
			b.send(1, &frames.ChannelFlow{Active: false})
			if m, _, err := b.readMethod(); err != nil || m.Key() != frames.MethodChannelFlowOK {
				return
			}
			<-resume
			b.send(1, &frames.ChannelFlow{Active: true})
			b.serveMethods(func(m frames.Method) {
				if p, ok := m.(*frames.BasicPublish); ok {
					published <- p.RoutingKey
				}
			})
		}}
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)
		// Past the lend period (the socket may have been lent to the
		// goroutine that opened the channel), so the flow=false is read.
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()

		short, cancel := context.WithTimeout(ctx, time.Second)
		err = ch.Publish(short, "", "paused", Publishing{Body: []byte("x")})
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)

		done := make(chan error, 1)
		go func() { done <- ch.Publish(ctx, "", "resumed", Publishing{Body: []byte("y")}) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("publish went out while flow was off: %v", err)
		default:
		}
		close(resume)
		require.NoError(t, <-done)
		require.Equal(t, "resumed", <-published, "the paused publish was never sent")
		require.NoError(t, conn.Close(ctx))
	})
}
