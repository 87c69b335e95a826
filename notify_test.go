package warren

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// A listener delivers every value in order: at once while the channel
// has room, held (by a goroutine that ends with the backlog) while it has
// not; the channel closes after the last one, and later posts are
// ignored.
func TestListenerOrderAndBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := make(chan int, 2)
		l := newChanListener(c, slog.New(slog.DiscardHandler), "test")
		for i := range 100 {
			l.post(i) // never blocks, though nobody receives yet
		}
		l.close()
		l.post(100)
		var got []int
		for v := range c {
			got = append(got, v)
		}
		require.Len(t, got, 100)
		for i, v := range got {
			require.Equal(t, i, v)
		}
	})
}

// Blocked/unblocked notifications not yet received fold into the latest
// state, counting the changes, so the backlog stays at one value and the
// last one received is the current state.
func TestListenerFoldsBlocking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := make(chan Blocking, 1)
		l := newChanListener(c, slog.New(slog.DiscardHandler), "blocked")
		l.fold = foldBlocking
		l.post(Blocking{Active: true, Reason: "low memory", Changes: 1}) // into the channel's buffer
		l.post(Blocking{Active: false, Changes: 1})                      // in the hand of the goroutine that waits to send it
		synctest.Wait()
		l.post(Blocking{Active: true, Reason: "low disk", Changes: 1}) // queued
		l.post(Blocking{Active: false, Changes: 1})                    // folded into the queued one
		require.Equal(t, Blocking{Active: true, Reason: "low memory", Changes: 1}, <-c)
		require.Equal(t, Blocking{Active: false, Changes: 1}, <-c)
		require.Equal(t, Blocking{Active: false, Changes: 2}, <-c, "the latest state, standing for two changes")
		l.post(Blocking{Active: false, Changes: 1})
		require.Equal(t, Blocking{Active: false, Changes: 1}, <-c)
		l.close()
		_, open := <-c
		require.False(t, open)
	})
}

// A listener that falls far behind is logged once, and still gets
// everything.
func TestListenerFarBehindLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		c := make(chan int)
		l := newChanListener(c, slog.New(slog.NewTextHandler(&logs, nil)), "confirm")
		for i := range 2*farBehind + 1 {
			l.post(i)
		}
		require.Equal(t, 1, strings.Count(logs.String(), "falls behind"), logs.String())
		require.Contains(t, logs.String(), "kind=confirm")
		l.close()
		n := 0
		for v := range c {
			require.Equal(t, n, v)
			n++
		}
		require.Equal(t, 2*farBehind+1, n)
	})
}

// A callback listener runs its callbacks in order on a goroutine that
// ends with the backlog.
func TestFuncListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		l := newFuncListener(func(s string) { got = append(got, s) }, slog.New(slog.DiscardHandler), "cancel")
		l.post("a")
		l.post("b")
		l.close()
		synctest.Wait()
		require.Equal(t, []string{"a", "b"}, got)
	})
}

// notifyPeer is a scripted broker for the notification tests: after the
// handshake (proposing heartbeat seconds) and channel 1's opening it runs
// then, then answers connection.close.
func notifyPeer(t *testing.T, heartbeat uint16, then func(b *scriptedBroker) bool) *netpipe.Connector {
	return &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
		b := newScripted(t, server)
		if b.handshake(heartbeat) != nil || b.answerChannel(false) != nil {
			return
		}
		if then(b) {
			b.serveMethods(nil)
		}
	}}
}

// Close listeners receive the error Err returns, for each way a
// connection ends, and are closed after it; a clean Close closes them
// without a value.
func TestNotifyCloseCarriesTheError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat uint16
		then      func(b *scriptedBroker) bool // false: the peer goes away
		check     func(t *testing.T, err error)
	}{
		{"network loss", 0, func(b *scriptedBroker) bool { return false }, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrConnectionLost)
		}},
		{"silent broker", 1, func(b *scriptedBroker) bool {
			_, _ = io.Copy(io.Discard, b.conn) // reads, never writes
			return false
		}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrHeartbeatTimeout)
		}},
		{"broker closes", 0, func(b *scriptedBroker) bool {
			b.send(0, &frames.ConnectionClose{ReplyCode: uint16(proto.ConnectionForced), ReplyText: "CONNECTION_FORCED - bye"})
			_, _, _ = b.readMethod() // close-ok
			return false
		}, func(t *testing.T, err error) {
			var ce *ConnectionError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, ConnectionForced, ce.Code)
			require.ErrorIs(t, err, ConnectionForced)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				connector := notifyPeer(t, tc.heartbeat, tc.then)
				defer connector.Wait()
				ctx := context.Background()
				conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
				require.NoError(t, err)
				unbuffered := conn.NotifyClose(make(chan error)) // nobody receives until the end
				buffered := conn.NotifyClose(make(chan error, 1))
				_, err = conn.Channel(ctx)
				require.NoError(t, err)
				<-conn.Done()
				for _, c := range []chan error{buffered, unbuffered} {
					got, ok := <-c
					require.True(t, ok, "a value before the close")
					tc.check(t, got)
					require.Equal(t, conn.Err(), got, "the error Err returns")
					_, ok = <-c
					require.False(t, ok, "closed after the error")
				}
				late := conn.NotifyClose(make(chan error, 1))
				got := <-late
				tc.check(t, got)
				require.NoError(t, conn.Close(ctx))
			})
		})
	}
	t.Run("clean close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			connector := notifyPeer(t, 0, func(*scriptedBroker) bool { return true })
			defer connector.Wait()
			ctx := context.Background()
			conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
			require.NoError(t, err)
			closes := conn.NotifyClose(make(chan error, 1))
			_, err = conn.Channel(ctx) // the peer answers channel.open first
			require.NoError(t, err)
			require.NoError(t, conn.Close(ctx))
			v, ok := <-closes
			require.False(t, ok, "closed without a value: %v", v)
			require.NoError(t, conn.Err())
		})
	})
}

// Blocked notifications arrive in order without stalling the connection,
// and an unread backlog folds into the latest state.
func TestNotifyBlockedFolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sent := make(chan struct{})
		connector := notifyPeer(t, 0, func(b *scriptedBroker) bool {
			b.send(0, &frames.ConnectionBlocked{Reason: "low on memory"})
			b.send(0, &frames.ConnectionUnblocked{})
			b.send(0, &frames.ConnectionBlocked{Reason: "low on disk"})
			close(sent)
			return true
		})
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		blocked := conn.NotifyBlocked(make(chan Blocking, 1))
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)
		_ = ch
		<-sent
		time.Sleep(10 * time.Millisecond) // past the lend period: the socket is read again if it was lent out
		synctest.Wait()
		require.True(t, conn.Blocked(), "read while nobody received the notifications")
		require.NoError(t, conn.Close(ctx))
		// The first went into the channel's buffer. What followed was held:
		// whether the unblocked notice was already in the hand of the
		// goroutine waiting to send it when the last one came (then the last
		// is a value of its own) or still queued (then they fold into one)
		// depends on how the frames were read; either way nothing is lost,
		// the order holds, and the last value is the current state.
		var got []Blocking
		for b := range blocked {
			got = append(got, b)
		}
		require.Equal(t, Blocking{Active: true, Reason: "low on memory", Changes: 1}, got[0])
		last := got[len(got)-1]
		require.True(t, last.Active)
		require.Equal(t, "low on disk", last.Reason)
		changes := 0
		for _, b := range got {
			changes += b.Changes
		}
		require.Equal(t, 3, changes, "every change counted: %v", got)
	})
}

// A channel's close listener receives each incarnation's error; the
// user's own Close sends nothing and closes it.
func TestChannelNotifyClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
			b := newScripted(t, server)
			if b.handshake(0) != nil || b.answerChannel(false) != nil {
				return
			}
			b.serveMethods(func(m frames.Method) {
				switch m := m.(type) {
				case *frames.QueueDeclare:
					if m.Passive {
						b.send(1, &frames.ChannelClose{ReplyCode: uint16(proto.NotFound), ReplyText: "NOT_FOUND - no queue", ClassID: 50, MethodID: 10})
						return
					}
					b.send(1, &frames.QueueDeclareOK{Queue: m.Queue})
				case *frames.ChannelOpen:
					b.send(1, &frames.ChannelOpenOK{})
				case *frames.ChannelClose:
					b.send(1, &frames.ChannelCloseOK{})
				}
			})
		}}
		defer connector.Wait()
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Recovery: Recovery{Disabled: true}})
		require.NoError(t, err)
		defer conn.Close(ctx)
		ch, err := conn.Channel(ctx)
		require.NoError(t, err)
		closes := ch.NotifyClose(make(chan error, 4))
		for range 2 {
			_, err = ch.QueueDeclare(ctx, "missing", QueueOptions{Passive: true})
			require.ErrorIs(t, err, NotFound)
			got := <-closes
			var che *ChannelError
			require.True(t, errors.As(got, &che))
			require.Equal(t, NotFound, che.Code)
			_, err = ch.QueueDeclare(ctx, "q", QueueOptions{})
			require.NoError(t, err, "reopened")
		}
		require.NoError(t, ch.Close(ctx))
		select {
		case err, ok := <-closes:
			require.False(t, ok, "the user's Close sends nothing: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("not closed")
		}
	})
}
