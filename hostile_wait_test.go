package warren

// The hostile-broker suite's faults of time: a broker that never answers,
// answers one byte a second, never finishes a close, or breaks the
// protocol while recovery is on. Each runs in a synctest bubble, so the
// bounds are asserted on a fake clock and no test sleeps. (The silent
// broker and the broker that stops reading are TestDriverSilentPeerDetected
// and TestDriverPeerStopsReadingMidPublish; a broker that blocks
// publishing for good is TestEveryRoundTripIsBounded's in cmd/warren.)

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// trickle writes b one byte a second; it stops at the first failed write.
func trickle(w io.Writer, b []byte) error {
	for i := range b {
		time.Sleep(time.Second)
		if _, err := w.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

func startFrame(t *testing.T) []byte {
	return hostileMethod(t, 0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US",
		ServerProperties: proto.Table{{Name: "product", Value: proto.String("scripted")}}})
}

// A handshake the broker never completes, however it stalls, fails
// Connect within the handshake timeout (30 s by default, with a
// context that has no deadline), with ErrHandshakeTimeout; the server's
// goroutine and the client's end.
func TestHostileHandshakeStalls(t *testing.T) {
	cases := []struct {
		name  string
		serve func(t *testing.T, b *scriptedBroker, server *netpipe.Conn)
	}{
		{"never sends connection.start", func(t *testing.T, b *scriptedBroker, server *netpipe.Conn) {
			_, _ = io.Copy(io.Discard, server)
		}},
		{"sends connection.start one byte a second", func(t *testing.T, b *scriptedBroker, server *netpipe.Conn) {
			go func() { _, _ = io.Copy(io.Discard, server) }()
			_ = trickle(server, startFrame(t))
		}},
		{"never answers connection.open", func(t *testing.T, b *scriptedBroker, server *netpipe.Conn) {
			b.send(0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US"})
			if _, _, err := b.readMethod(); err != nil { // start-ok
				return
			}
			b.send(0, &frames.ConnectionTune{ChannelMax: 64, FrameMax: 131072})
			_, _ = io.Copy(io.Discard, server)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
					b := newScripted(t, server)
					hdr := make([]byte, 8)
					if _, err := io.ReadFull(server, hdr); err != nil {
						return
					}
					tc.serve(t, b, server)
				}}
				defer connector.Wait()
				start := time.Now()
				conn, err := Connect(context.Background(), connector, Config{Recovery: Recovery{Disabled: true}})
				elapsed := time.Since(start)
				require.Nil(t, conn)
				require.ErrorIs(t, err, ErrHandshakeTimeout)
				require.Equal(t, statemachine.DefaultHandshakeTimeout, elapsed.Round(time.Second), "%v", err)
			})
		})
	}
}

// A malformed table in connection.start fails Connect with a typed
// syntax error, and the server is told why.
func TestHostileHandshakeMalformedTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		told := make(chan uint16, 1)
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			hdr := make([]byte, 8)
			if _, err := io.ReadFull(server, hdr); err != nil {
				return
			}
			start := startFrame(t)
			i := bytes.Index(start, []byte("productS"))
			require.Positive(t, i)
			start[i+len("product")] = 'Z' // no such field type
			_, _ = server.Write(start)
			for {
				m, _, err := b.readMethod()
				if err != nil {
					return
				}
				if cl, ok := m.(*frames.ConnectionClose); ok {
					told <- cl.ReplyCode
					b.send(0, &frames.ConnectionCloseOK{})
				}
			}
		}}
		defer connector.Wait()
		_, err := Connect(context.Background(), connector, Config{Recovery: Recovery{Disabled: true}})
		var ce *ConnectionError
		require.True(t, errors.As(err, &ce), "typed: %v", err)
		require.Equal(t, proto.SyntaxError, ce.Code)
		require.Equal(t, uint16(proto.SyntaxError), <-told)
	})
}

// A broker that answers one byte a second: a call ends by its context
// while the answer trickles in; the late answer is matched to that call
// (and dropped), and the next call gets its own answer, slowly but
// correctly. The bytes keep the heartbeat monitor content.
func TestHostileAnswersOneByteASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(5) != nil || b.answerChannel(false) != nil {
				return
			}
			for {
				m, _, err := b.readMethod()
				if err != nil {
					return
				}
				switch m := m.(type) {
				case *frames.QueueDeclare:
					if trickle(server, hostileMethod(t, 1, &frames.QueueDeclareOK{Queue: m.Queue})) != nil {
						return
					}
				case *frames.ConnectionClose:
					b.send(0, &frames.ConnectionCloseOK{})
					_, _ = io.Copy(io.Discard, server)
					return
				}
			}
		}}
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)

		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err = ch.QueueDeclare(short, "first", QueueOptions{})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 5*time.Second, time.Since(start).Round(time.Second))

		q, err := ch.QueueDeclare(ctx, "second", QueueOptions{})
		require.NoError(t, err)
		require.Equal(t, "second", q.Name, "its own answer, not the late one")
		require.True(t, conn.IsAlive(), "1 byte/s within a 5 s heartbeat is traffic")
		require.NoError(t, conn.Close(ctx))
	})
}

// A broker that never answers connection.close: Close returns within the
// close timeout (10 s by default, with a context that has no deadline)
// and the connection has ended.
func TestHostileCloseNeverFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(0) != nil {
				return
			}
			_, _ = io.Copy(io.Discard, server) // reads everything, answers nothing
		}}
		defer connector.Wait()
		conn, err := Connect(context.Background(), connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		start := time.Now()
		err = conn.Close(context.Background())
		require.Equal(t, statemachine.DefaultCloseTimeout, time.Since(start).Round(time.Second))
		require.ErrorIs(t, err, ErrCloseTimeout)
		select {
		case <-conn.Done():
		default:
			t.Fatal("the connection has not ended")
		}
		require.False(t, conn.IsAlive())
	})
}

// With recovery on, a broker that breaks the protocol shows as a loss,
// then as retries while the new connections stall; a call made meanwhile
// ends by its context, and Close ends the recovery and the connection.
func TestHostileBrokerWithRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if n > 1 { // every later attempt: never a connection.start
				_, _ = io.Copy(io.Discard, server)
				return
			}
			if b.handshake(0) != nil || b.answerChannel(false) != nil {
				return
			}
			bad := hostileMethod(t, 1, &frames.BasicQosOK{})
			bad[len(bad)-1] = 0 // not a frame end
			_, _ = server.Write(bad)
			b.serveMethods(nil)
		}}
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{
			Backoff:        Backoff{Initial: 100 * time.Millisecond, Max: time.Second, NoJitter: true},
			AttemptTimeout: 5 * time.Second,
		}})
		require.NoError(t, err)
		events := conn.NotifyRecovery(make(chan RecoveryEvent, 64))
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)

		lost := <-events
		require.Equal(t, RecoveryLost, lost.Kind)
		var ce *ConnectionError
		require.True(t, errors.As(lost.Err, &ce), "%v", lost.Err)
		require.Equal(t, proto.FrameError, ce.Code)
		for attempt := 1; attempt <= 3; attempt++ {
			e := <-events
			require.Equal(t, RecoveryRetrying, e.Kind)
			require.Equal(t, attempt, e.Attempt)
			if attempt > 1 {
				// The handshake timer and the attempt's deadline fire
				// at the same instant: either says it stalled.
				require.True(t, errors.Is(e.Err, ErrHandshakeTimeout) || errors.Is(e.Err, context.DeadlineExceeded),
					"the attempt before stalled: %v", e.Err)
			}
		}

		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = ch.QueueDeclare(short, "q", QueueOptions{})
		require.ErrorIs(t, err, context.DeadlineExceeded)

		require.NoError(t, conn.Close(ctx))
		<-conn.Done()
		for e := range events {
			if e.Kind == RecoveryGaveUp {
				require.ErrorIs(t, e.Err, ErrClosed, "Close stopped it")
				return
			}
		}
		t.Fatal("no gave-up event")
	})
}

// Bodies far larger than announced are refused before anything that
// size is allocated: under the default MaxMessageSize, a delivery
// announced one byte over it is skipped (and rejected, being unacked)
// while its 128 MiB stream past at a bounded cost in memory; the
// consumer then gets the next message, and the warning names the size.
func TestHostileOversizeBodyDefaultLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 128 MiB")
	}
	const limit = DefaultMaxMessageSize
	require.Equal(t, uint64(128<<20), uint64(limit), "the documented default: 128 MiB")
	var logs testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rejected := make(chan uint64, 1)
	var before, after runtime.MemStats
	conn, cons := hostileConsumerWith(t, ctx, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, false, func(b *scriptedBroker, server *netpipe.Conn) {
		runtime.GC()
		runtime.ReadMemStats(&before)
		out := hostileMethod(t, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 1, RoutingKey: "q"})
		h, err := frames.AppendContentHeader(nil, 1, limit+1, &proto.Properties{})
		require.NoError(t, err)
		_, _ = server.Write(append(out, h...))
		chunk := make([]byte, 131072-8)
		frame := frames.AppendBody(nil, 1, chunk, 131072)
		sent := uint64(0)
		for sent+uint64(len(chunk)) <= limit+1 {
			if _, err := server.Write(frame); err != nil {
				return
			}
			sent += uint64(len(chunk))
		}
		_, _ = server.Write(frames.AppendBody(nil, 1, chunk[:limit+1-sent], 131072))
		next := hostileMethod(t, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: 2, RoutingKey: "q"})
		h, _ = frames.AppendContentHeader(nil, 1, 4, &proto.Properties{})
		next = append(next, h...)
		_, _ = server.Write(append(next, frames.AppendBody(nil, 1, []byte("next"), 131072)...))
		b.serveMethods(func(m frames.Method) {
			if r, ok := m.(*frames.BasicReject); ok {
				rejected <- r.DeliveryTag
			}
		})
	})
	d := receive(t, ctx, cons)
	runtime.ReadMemStats(&after)
	require.Equal(t, uint64(2), d.DeliveryTag)
	require.Equal(t, []byte("next"), d.Body)
	select {
	case tag := <-rejected:
		require.Equal(t, uint64(1), tag, "the oversize delivery is rejected so that it cannot loop")
	case <-ctx.Done():
		t.Fatal("no basic.reject")
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	require.Less(t, allocated, uint64(8<<20), "128 MiB skipped with %d bytes allocated", allocated)
	require.Contains(t, logs.String(), "size=134217729")
	require.NoError(t, d.Ack(false))
	require.NoError(t, conn.Close(ctx))
}
