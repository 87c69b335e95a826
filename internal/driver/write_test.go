package driver

import (
	"context"
	"encoding/binary"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/frames"
)

// recordSeqs serves confirms and sends the sequence number each publish's
// body starts with, in arrival order, to seqs.
func recordSeqs(seqs chan<- uint64, ack bool) func(p *peer) {
	return func(p *peer) {
		p.serve(func(_ uint64, body []byte) bool {
			seqs <- binary.BigEndian.Uint64(body)
			return ack
		})
	}
}

// A stream of publishes left to the writer goroutine is written by it
// alone, coalesced, and in order.
func TestWriteStreamGoesThroughTheWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		seqs := make(chan uint64, n)
		h := newHarness(t, harnessOptions{confirm: true}, recordSeqs(seqs, true))
		before := h.sock.counts()
		ps := make([]*pending, n)
		for i := range ps {
			ps[i] = h.publish(FlushLater, seqBody(uint64(i), 64))
		}
		for _, p := range ps {
			require.NoError(t, h.d.Await(h.ctx, p.done))
			require.True(t, p.ack)
		}
		got := h.sock.counts().sub(before)
		require.Zero(t, got.direct, "no direct write")
		require.Positive(t, got.written)
		require.Less(t, got.written, n, "coalesced")
		for i := range n {
			require.Equal(t, uint64(i), <-seqs)
		}
	})
}

// The socket takes only part of a direct write: the rest is carried over
// to the writer goroutine, which writes it before the publishes queued
// after it; everything arrives intact and in order.
func TestWritePartialDirectWriteCarriedOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			size = 256 << 10
			n    = 6
		)
		release := make(chan struct{})
		seqs := make(chan uint64, n)
		h := newHarness(t, harnessOptions{confirm: true, pipeBuffer: 16 << 10}, func(p *peer) {
			if p.answerOpen(true) != nil {
				return
			}
			if p.wait(release) { // not reading meanwhile: the pipe fills up
				recordSeqs(seqs, true)(p)
			}
		})
		before := h.sock.counts()
		ps := []*pending{h.publish(FlushNow, seqBody(0, size))}
		got := h.sock.counts().sub(before)
		require.Equal(t, 1, got.direct, "written directly")
		require.Equal(t, 1, got.partial, "in part")
		for i := 1; i < n; i++ {
			ps = append(ps, h.publish(FlushLater, seqBody(uint64(i), size)))
		}
		close(release)
		for _, p := range ps {
			require.NoError(t, h.d.Await(h.ctx, p.done))
			require.True(t, p.ack)
		}
		require.Equal(t, 1, h.sock.counts().sub(before).direct, "the rest went through the writer")
		for i := range n {
			require.Equal(t, uint64(i), <-seqs)
		}
	})
}

// Commands made in Perform with FlushBatch (a delivery handler's acks)
// are written together, by the reader, when Perform returns: one direct
// write for a read's worth of deliveries, and nothing for the writer.
// Outside Perform, FlushBatch is FlushLater.
func TestWriteBatchAfterPerform(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		acks := make(chan uint64, n)
		send := make(chan struct{})
		h := newHarness(t, harnessOptions{}, func(p *peer) {
			if p.answerOpen(false) != nil {
				return
			}
			if !p.wait(send) {
				return
			}
			var out []byte
			for i := uint64(1); i <= n; i++ {
				out, _ = frames.AppendMessage(out, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: i, RoutingKey: "q"}, nil, []byte("x"), 131072)
			}
			_, _ = p.nc.Write(out)
			for {
				m, err := p.readMethod()
				if err != nil {
					return
				}
				switch m := m.(type) {
				case *frames.BasicAck:
					acks <- m.DeliveryTag
				case *frames.ConnectionClose:
					p.send(0, &frames.ConnectionCloseOK{})
					return
				}
			}
		})
		h.h.onDelivery = func(tag uint64) {
			m := h.d.Lock()
			require.NoError(t, m.Ack(1, tag, false))
			h.d.Unlock(FlushBatch)
		}
		synctest.Wait()
		before := h.sock.counts()
		close(send)
		for i := uint64(1); i <= n; i++ {
			require.Equal(t, i, <-acks)
		}
		got := h.sock.counts().sub(before)
		require.Equal(t, 1, got.readerReads, "one read of all the deliveries")
		require.Equal(t, 1, got.direct, "one write of all the acks: %+v", got)
		require.Zero(t, got.written)
		require.True(t, h.h.performOnReader)

		before = h.sock.counts()
		m := h.d.Lock()
		require.NoError(t, m.Ack(1, n, true))
		h.d.Unlock(FlushBatch)
		synctest.Wait()
		got = h.sock.counts().sub(before)
		require.Equal(t, counts{written: 1}, got, "outside Perform: the writer")
		require.Equal(t, uint64(n), <-acks)
	})
}

// A publisher waits for room in the write buffer, within its context,
// while the broker does not read; it may publish again once the writer
// has written.
func TestWriteRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, harnessOptions{pipeBuffer: 4 << 10}, func(p *peer) {
			if p.answerOpen(false) != nil {
				return
			}
			if p.wait(release) {
				p.serve(nil)
			}
		})
		h.d.mu.Lock()
		h.d.limit = 32 << 10
		h.d.mu.Unlock()
		body := make([]byte, 1024)
		var room <-chan struct{}
		for i := 0; room == nil; i++ {
			require.Less(t, i, 100, "the write buffer never filled")
			m := h.d.Lock()
			room = h.d.RoomLocked(1)
			if room == nil {
				_, err := m.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, nil, body, nil)
				require.NoError(t, err)
			}
			h.d.Unlock(FlushLater)
			synctest.Wait()
		}
		ctx, cancel := context.WithTimeout(h.ctx, time.Second)
		defer cancel()
		require.ErrorIs(t, h.d.Await(ctx, room), context.DeadlineExceeded)
		close(release)
		for i := 0; room != nil; i++ {
			require.Less(t, i, 100, "no room after the broker read")
			require.NoError(t, h.d.Await(h.ctx, room), "room once the broker reads")
			h.d.Lock()
			room = h.d.RoomLocked(1)
			h.d.Unlock(FlushLater)
		}
	})
}

// channel.flow active=false from the broker leaves no room on that
// channel until active=true.
func TestWriteFlowPausesTheChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resume := make(chan struct{})
		h := newHarness(t, harnessOptions{}, func(p *peer) {
			if p.answerOpen(false) != nil {
				return
			}
			p.send(1, &frames.ChannelFlow{Active: false})
			go func() {
				if p.wait(resume) {
					p.send(1, &frames.ChannelFlow{Active: true})
				}
			}()
			p.serve(nil)
		})
		h.d.Reclaim() // the socket may be lent out, with nobody reading
		synctest.Wait()
		h.d.Lock()
		room := h.d.RoomLocked(1)
		h.d.Unlock(FlushLater)
		require.NotNil(t, room, "paused")
		close(resume)
		require.NoError(t, h.d.Await(h.ctx, room))
		h.d.Lock()
		room = h.d.RoomLocked(1)
		h.d.Unlock(FlushLater)
		require.Nil(t, room, "resumed")
	})
}
