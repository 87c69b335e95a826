package driver

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// lendSocket confirms one publish at a time until the reader has lent the
// socket out. The first waiter normally makes it lend; a waiter whose
// reply came before it blocked does not, hence the loop.
func (h *harness) lendSocket() {
	h.t.Helper()
	for i := 0; i < 10; i++ {
		h.confirmed(seqBody(uint64(i), 64))
		if h.owner() == ownNone {
			return
		}
	}
	h.t.Fatal("the reader never lent the socket out")
}

// held serves confirms, holding back the publish whose body starts with
// sequence number hold: it calls atHold, and acks it afterwards only if
// atHold returns true (else the peer stops, closing its end).
func held(hold uint64, atHold func(p *peer) bool) func(p *peer) {
	return func(p *peer) {
		stop := false
		p.serve(func(_ uint64, body []byte) bool {
			if stop {
				return false
			}
			if binary.BigEndian.Uint64(body) == hold && !atHold(p) {
				stop = true
				_ = p.nc.Close()
				return false
			}
			return true
		})
	}
}

const noHold = ^uint64(0)

// One publish at a time, each waited for, and one RPC at a time: once
// the socket is lent out, every reply is read by the goroutine waiting for
// it and every request is written by the goroutine that makes it; the
// reader and writer goroutines do nothing.
func TestLendRequestResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{confirm: true}, func(p *peer) { p.serve(nil) })
		h.lendSocket()

		before := h.sock.counts()
		const n = 100
		for i := range n {
			h.confirmed(seqBody(uint64(1000+i), 64))
			require.Equal(t, ownNone, h.owner(), "lent again after each reply")
		}
		require.Equal(t, counts{waiterReads: n, direct: n}, h.sock.counts().sub(before))

		before = h.sock.counts()
		for range n {
			p := h.call(&frames.BasicQos{PrefetchCount: 10})
			require.NoError(t, h.d.Await(h.ctx, p.done))
			require.NoError(t, p.err)
		}
		require.Equal(t, counts{waiterReads: n, direct: n}, h.sock.counts().sub(before))
		require.Zero(t, h.h.performs)
	})
}

// A waiting goroutine blocks while the reader goroutine reads: the reader
// wakes it, and lends the socket out after that read.
func TestLendAfterAWaiterBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, harnessOptions{confirm: true}, held(5, func(p *peer) bool { return p.wait(release) }))
		h.d.Reclaim() // opening the channel may have lent it already
		require.Equal(t, ownReader, h.owner())
		p := h.publish(FlushNow, seqBody(5, 64))
		go func() {
			synctest.Wait() // the waiter blocked, the reader reads
			close(release)
		}()
		before := h.sock.counts()
		require.NoError(t, h.d.Await(h.ctx, p.done))
		require.True(t, p.ack)
		require.Equal(t, ownNone, h.owner())
		got := h.sock.counts().sub(before)
		require.Equal(t, 1, got.readerReads, "the reader read the ack")
		require.Zero(t, got.waiterReads)
	})
}

// A reading waiter's context ends: Await returns its error at once, the
// confirm that comes later still resolves the publish, and the
// connection goes on.
func TestLendWaiterContextEnds(t *testing.T) {
	for _, name := range []string{"deadline", "cancel"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				h := newHarness(t, harnessOptions{confirm: true, lendPeriod: time.Hour},
					held(1000, func(p *peer) bool { return p.wait(release) }))
				h.lendSocket()
				p := h.publish(FlushNow, seqBody(1000, 64))

				ctx, cancel := context.WithTimeout(h.ctx, time.Second)
				defer cancel()
				want := context.DeadlineExceeded
				if name == "cancel" {
					want = context.Canceled
					go func() {
						time.Sleep(100 * time.Millisecond)
						cancel()
					}()
				}
				before := h.sock.counts()
				start := time.Now()
				err := h.d.Await(ctx, p.done)
				require.ErrorIs(t, err, want)
				if name == "deadline" {
					require.Equal(t, time.Second, time.Since(start), "returned when the context ended")
				}
				require.Equal(t, 1, h.sock.counts().sub(before).waiterReads, "the waiter was reading, and was interrupted")
				require.Equal(t, ownNone, h.owner(), "lent again")

				close(release)
				require.NoError(t, h.d.Await(h.ctx, p.done), "the late confirm is read")
				require.True(t, p.ack)
				h.confirmed(seqBody(2000, 64))
			})
		})
	}
}

// Deliveries read by a waiter go to the reader goroutine with the socket:
// Perform runs there, in order, and the waiter still gets its answer.
func TestLendDeliveriesGoToTheReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const deliveries = 20
		h := newHarness(t, harnessOptions{confirm: true, lendPeriod: time.Hour}, held(1000, func(p *peer) bool {
			var out []byte
			for i := uint64(1); i <= deliveries; i++ {
				out, _ = frames.AppendMessage(out, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: i, RoutingKey: "q"}, nil, []byte("x"), 131072)
			}
			_, _ = p.nc.Write(out)
			return true
		}))
		var got []uint64
		h.h.onDelivery = func(tag uint64) { got = append(got, tag) }
		h.lendSocket()

		p := h.publish(FlushNow, seqBody(1000, 64))
		require.NoError(t, h.d.Await(h.ctx, p.done))
		require.True(t, p.ack)
		synctest.Wait()
		require.Len(t, got, deliveries)
		for i, tag := range got {
			require.Equal(t, uint64(i+1), tag)
		}
		require.True(t, h.h.performOnReader, "Perform ran on the reader goroutine")
	})
}

// Reclaim, a kick and the lend period each give a lent socket back to
// the reader goroutine.
func TestLendSocketTakenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{confirm: true, lendPeriod: time.Hour}, func(p *peer) { p.serve(nil) })

		h.lendSocket()
		h.d.Reclaim()
		require.Equal(t, ownReader, h.owner(), "Reclaim")

		h.lendSocket()
		h.d.kick()
		synctest.Wait()
		require.Equal(t, ownReader, h.owner(), "a kick")

		h.lendSocket()
		h.d.mu.Lock()
		h.d.lendPeriod = 5 * time.Millisecond
		h.d.mu.Unlock()
		h.d.kick() // the parked reader takes the new period
		synctest.Wait()
		h.lendSocket()
		time.Sleep(4 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, ownNone, h.owner(), "still lent within the period")
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, ownReader, h.owner(), "the lend period")

		// A goroutine that Awaits while the connection is not quiet (here
		// a second one already waits) gives the socket to the reader.
		h.lendSocket()
		h.d.awaiting.Add(1)
		p := h.publish(FlushNow, seqBody(3000, 64))
		require.NoError(t, h.d.Await(h.ctx, p.done))
		h.d.awaiting.Add(-1)
		require.Equal(t, ownReader, h.owner())
	})
}

// The broker closes the connection while the socket is lent out and
// nobody reads: the reader takes the socket back within the lend period
// and reads the close.
func TestLendBrokerCloseWhileLent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		closeNow := make(chan struct{})
		h := newHarness(t, harnessOptions{confirm: true}, func(p *peer) {
			go func() {
				if !p.wait(closeNow) {
					return
				}
				p.send(0, &frames.ConnectionClose{ReplyCode: uint16(proto.ConnectionForced), ReplyText: "bye"})
			}()
			p.serve(nil)
		})
		h.lendSocket()
		start := time.Now()
		close(closeNow)
		<-h.d.Done()
		require.LessOrEqual(t, time.Since(start), defaultLendPeriod)
		var ce *proto.ConnectionError
		require.ErrorAs(t, h.h.closeErr, &ce)
		require.Equal(t, proto.ConnectionForced, ce.Code)
	})
}

// The broker goes away while a waiter reads: the waiter's publish fails
// with the connection's error, and the shutdown happens on the reader.
func TestLendPeerGoneWhileWaiterReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{confirm: true, lendPeriod: time.Hour}, held(1000, func(*peer) bool { return false }))
		h.lendSocket()
		p := h.publish(FlushNow, seqBody(1000, 64))
		before := h.sock.counts()
		require.NoError(t, h.d.Await(h.ctx, p.done))
		require.ErrorIs(t, p.err, statemachine.ErrConnectionLost)
		require.Positive(t, h.sock.counts().sub(before).waiterReads)
		<-h.d.Done()
		require.ErrorIs(t, h.h.closeErr, statemachine.ErrConnectionLost)
	})
}

// A broker that goes silent while a waiter reads is caught by the
// heartbeat timer, which the writer runs: the waiter's read is
// interrupted and its publish fails.
func TestLendSilentPeerWhileWaiterReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = 2 * time.Second
		release := make(chan struct{})
		defer close(release)
		h := newHarness(t, harnessOptions{confirm: true, heartbeat: 2, lendPeriod: time.Hour},
			held(1000, func(p *peer) bool { p.wait(release); return false }))
		h.lendSocket()
		p := h.publish(FlushNow, seqBody(1000, 64))
		start := time.Now()
		require.NoError(t, h.d.Await(h.ctx, p.done))
		require.ErrorIs(t, p.err, statemachine.ErrHeartbeatTimeout)
		require.LessOrEqual(t, time.Since(start), 3*hb)
		<-h.d.Done()
	})
}

// Await returns ctx's error only when done is not closed too.
func TestAwaitResultWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{}, func(p *peer) { p.serve(nil) })
		done := make(chan struct{})
		close(done)
		ctx, cancel := context.WithCancel(h.ctx)
		cancel()
		require.NoError(t, h.d.Await(ctx, done))
		err := h.d.Await(ctx, make(chan struct{}))
		require.True(t, errors.Is(err, context.Canceled))
	})
}

// A waiter whose answer is read by the reader goroutine between Await's
// first look at done and its taking the lock, after which the reader lends
// the socket out, returns at once instead of reading for bytes nobody owes
// it (it used to wait for the next heartbeat tick's kick: seen as 2 s
// stalls of Confirmation.Wait under -race with heartbeat=4).
func TestAwaitAnsweredBeforeItTookTheLock(t *testing.T) {
	h := newHarness(t, harnessOptions{confirm: true}, func(p *peer) { p.serve(nil) })
	h.d.mu.Lock()
	h.d.lendPeriod = time.Hour // the parked reader must not take the socket back meanwhile
	h.d.mu.Unlock()
	h.lendSocket()
	done := make(chan struct{})
	h.d.mu.Lock() // the reader, draining the event that answers done
	returned := make(chan error, 1)
	go func() { returned <- h.d.Await(h.ctx, done) }()
	time.Sleep(20 * time.Millisecond) // past its first look at done: at the lock
	close(done)
	require.Equal(t, ownNone, h.d.rowner, "lent out, as after such a read")
	h.d.mu.Unlock()
	select {
	case err := <-returned:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		h.d.kick() // let the test end
		<-returned
		t.Fatal("Await read the socket instead of returning")
	}
}
