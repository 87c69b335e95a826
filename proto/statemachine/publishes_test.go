package statemachine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// handle stands for a caller's confirm handle, passed to Publish as a ref.
type handle struct{ seq uint64 }

// publishHandles puts channel ch in confirm mode (if it is not) and
// publishes n messages, each with a new *handle as its ref; it returns the
// handles by sequence number (index 0 unused).
func publishHandles(tc *testConn, ch uint16, n int) []*handle {
	tc.t.Helper()
	if !tc.conn.Confirming(ch) {
		tc.call(ch, &frames.ConfirmSelect{})
		tc.reply(ch, frames.MethodConfirmSelect, &frames.ConfirmSelectOK{})
	}
	hs := make([]*handle, n+1)
	for range n {
		seq := tc.conn.channel(ch).confirms.Next()
		h := &handle{seq: seq}
		publishRef(tc, ch, seq, &frames.BasicPublish{RoutingKey: "q"}, []byte(fmt.Sprint("m", seq)), h)
		if int(seq) < len(hs) {
			hs[seq] = h
		}
	}
	return hs
}

// requirePublishes checks that got lists exactly the publishes seqs with
// their handles (the very pointers given to Publish).
func requirePublishes(t testing.TB, hs []*handle, seqs []uint64, got []Published) {
	t.Helper()
	require.Len(t, got, len(seqs), "publishes %v", got)
	for i, seq := range seqs {
		require.Equal(t, seq, got[i].Seq, "publish %d", i)
		require.Same(t, hs[seq], got[i].Ref, "ref of publish %d", seq)
	}
}

func TestConfirmPublishes(t *testing.T) {
	type step struct {
		m       frames.Method
		settled []uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single acks", []step{
			{&frames.BasicAck{DeliveryTag: 1}, []uint64{1}},
			{&frames.BasicAck{DeliveryTag: 2}, []uint64{2}},
		}},
		{"multiple ack", []step{
			{&frames.BasicAck{DeliveryTag: 4, Multiple: true}, []uint64{1, 2, 3, 4}},
			{&frames.BasicAck{DeliveryTag: 6, Multiple: true}, []uint64{5, 6}},
		}},
		{"out-of-order singles then a multiple", []step{
			{&frames.BasicAck{DeliveryTag: 3}, []uint64{3}},
			{&frames.BasicAck{DeliveryTag: 1}, []uint64{1}},
			{&frames.BasicNack{DeliveryTag: 5}, []uint64{5}},
			{&frames.BasicAck{DeliveryTag: 6, Multiple: true}, []uint64{2, 4, 6}},
		}},
		{"nacks", []step{
			{&frames.BasicNack{DeliveryTag: 2}, []uint64{2}},
			{&frames.BasicNack{DeliveryTag: 4, Multiple: true, Requeue: true}, []uint64{1, 3, 4}},
		}},
		{"multiple with tag 0", []step{
			{&frames.BasicAck{DeliveryTag: 2}, []uint64{2}},
			{&frames.BasicAck{DeliveryTag: 0, Multiple: true}, []uint64{1, 3, 4, 5, 6}},
		}},
		{"multiple settling nothing new", []step{
			{&frames.BasicAck{DeliveryTag: 2, Multiple: true}, []uint64{1, 2}},
			{&frames.BasicAck{DeliveryTag: 2, Multiple: true}, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testAllModes(t, testConfig(), func(tc *testConn) {
				tc.handshake()
				tc.openChannel(1)
				hs := publishHandles(tc, 1, 6)
				for _, s := range tt.steps {
					tc.writeMethod(1, s.m)
					e := tc.wantEvent(EventConfirm)
					requirePublishes(tc.t, hs, s.settled, e.Publishes)
				}
				tc.wantIdle()
			})
		})
	}
}

func TestChannelClosedPublishes(t *testing.T) {
	tests := []struct {
		name string
		end  func(tc *testConn)
		// unconfirmed on channels 1 and 2 after acks of 2 (1) and 1 (2)
		want [][]uint64
	}{
		{"peer channel.close", func(tc *testConn) {
			tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406})
			tc.wantMethod(1, &frames.ChannelCloseOK{})
		}, [][]uint64{{1, 3, 4}}},
		{"our close", func(tc *testConn) {
			require.NoError(tc.t, tc.conn.CloseChannel(1, proto.Reply{}))
			tc.wantMethod(1, &frames.ChannelClose{ReplyCode: 200})
			tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 4}) // in flight: discarded
			tc.writeMethod(1, &frames.ChannelCloseOK{})
		}, [][]uint64{{1, 3, 4}}},
		{"connection loss", func(tc *testConn) { tc.writeEOF() }, [][]uint64{{1, 3, 4}, {2, 3}}},
		{"our connection close", func(tc *testConn) {
			require.NoError(tc.t, tc.conn.Close(proto.Reply{}))
			tc.wantConnectionClose(200)
		}, [][]uint64{{1, 3, 4}, {2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testAllModes(t, testConfig(), func(tc *testConn) {
				tc.handshake()
				tc.openChannel(1)
				tc.openChannel(2)
				hs := [][]*handle{nil, publishHandles(tc, 1, 4), publishHandles(tc, 2, 3)}
				tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 2})
				tc.writeMethod(2, &frames.BasicAck{DeliveryTag: 1})
				tc.wantEvent(EventConfirm)
				tc.wantEvent(EventConfirm)
				tt.end(tc)
				for i, want := range tt.want {
					e := tc.wantEvent(EventChannelClosed)
					require.Equal(tc.t, uint16(i+1), e.Channel)
					require.Equal(tc.t, len(want), e.Unconfirmed)
					requirePublishes(tc.t, hs[i+1], want, e.Publishes)
				}
				require.Zero(tc.t, tc.conn.Unconfirmed(1))
			})
		})
	}
}

// TestReturnPublishRef: a return matched to its publish carries the
// publish's ref; one released with an inferred sequence number carries the
// ref of the publish its confirm settled; one released by the channel's
// end without a publish carries none.
func TestReturnPublishRef(t *testing.T) {
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		hs := publishHandles(tc, 1, 1)
		lost := &handle{seq: 2}
		publishRef(tc, 1, 2, &frames.BasicPublish{Exchange: "x", RoutingKey: "nowhere", Mandatory: true}, []byte("lost"), lost)
		hs = append(hs, lost)

		// Matched by exchange and routing key.
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, Exchange: "x", RoutingKey: "nowhere"}, nil, []byte("lost"))
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 2, Multiple: true})
		ret := tc.wantEvent(EventReturn)
		require.Equal(tc.t, uint64(2), ret.Message.PublishSeq)
		require.Same(tc.t, lost, ret.Message.PublishRef)
		requirePublishes(tc.t, hs, []uint64{1, 2}, tc.wantEvent(EventConfirm).Publishes)

		// Unmatched (the publish was not mandatory): bound to the confirm
		// that follows, and given that publish's ref.
		h3 := &handle{seq: 3}
		publishRef(tc, 1, 3, &frames.BasicPublish{RoutingKey: "q"}, []byte("odd"), h3)
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, RoutingKey: "q"}, nil, []byte("odd"))
		tc.wantIdle()
		tc.writeMethod(1, &frames.BasicAck{DeliveryTag: 3})
		ret = tc.wantEvent(EventReturn)
		require.Equal(tc.t, uint64(3), ret.Message.PublishSeq)
		require.Same(tc.t, h3, ret.Message.PublishRef)
		tc.wantEvent(EventConfirm)

		// Unmatched and released by the channel's end: no publish, no ref.
		h4 := &handle{seq: 4}
		publishRef(tc, 1, 4, &frames.BasicPublish{RoutingKey: "q"}, []byte("x"), h4)
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, RoutingKey: "elsewhere"}, nil, []byte("x"))
		tc.writeMethod(1, &frames.ChannelClose{ReplyCode: 406})
		tc.wantMethod(1, &frames.ChannelCloseOK{})
		ret = tc.wantEvent(EventReturn)
		require.Zero(tc.t, ret.Message.PublishSeq)
		require.Nil(tc.t, ret.Message.PublishRef)
		e := tc.wantEvent(EventChannelClosed)
		require.Equal(tc.t, []Published{{Seq: 4, Ref: h4}}, e.Publishes)
		tc.wantIdle()
	})
}

func TestPublishRefOutsideConfirmMode(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	seq, err := tc.conn.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("x"), &handle{})
	require.NoError(t, err)
	require.Zero(t, seq)
	require.Zero(t, tc.conn.Unconfirmed(1))
	tc.wantContent(1, &frames.BasicPublish{RoutingKey: "q"}, nil, []byte("x"))
}

// TestPublishesOfQueuedEvents: events queued together each keep their own
// Publishes, read when NextEvent returns them, with the machine used
// directly (no copies by the harness in between).
func TestPublishesOfQueuedEvents(t *testing.T) {
	setup := func(t *testing.T, channels int) (*testConn, [][]*handle) {
		tc := newOpenConn(t, testConfig(), 0)
		hs := [][]*handle{nil}
		for ch := range uint16(channels) {
			tc.openChannel(ch + 1)
			hs = append(hs, publishHandles(tc, ch+1, 5))
		}
		return tc, hs
	}
	next := func(t *testing.T, c *Conn, kind EventKind) Event {
		t.Helper()
		e := c.NextEvent()
		require.Equal(t, kind, e.Kind, "%+v", e)
		return e
	}
	t.Run("two confirms fed together", func(t *testing.T) {
		tc, hs := setup(t, 1)
		c := tc.conn
		b := append(methodFrame(t, 1, &frames.BasicAck{DeliveryTag: 2, Multiple: true}), methodFrame(t, 1, &frames.BasicNack{DeliveryTag: 5, Multiple: true})...)
		require.NoError(t, c.Feed(b))
		requirePublishes(t, hs[1], []uint64{1, 2}, next(t, c, EventConfirm).Publishes)
		requirePublishes(t, hs[1], []uint64{3, 4, 5}, next(t, c, EventConfirm).Publishes)
		require.Equal(t, EventNone, c.NextEvent().Kind)
	})
	t.Run("a return and its confirm from one frame", func(t *testing.T) {
		tc := newOpenConn(t, testConfig(), 0)
		tc.openChannel(1)
		hs := publishHandles(tc, 1, 2)
		c := tc.conn
		require.NoError(t, c.Feed(append(
			headerlessReturn(t, 1, "q"), methodFrame(t, 1, &frames.BasicAck{DeliveryTag: 2, Multiple: true})...)))
		ret := next(t, c, EventReturn)
		require.Equal(t, uint64(2), ret.Message.PublishSeq)
		require.Same(t, hs[2], ret.Message.PublishRef)
		requirePublishes(t, hs, []uint64{1, 2}, next(t, c, EventConfirm).Publishes)
		require.Equal(t, EventNone, c.NextEvent().Kind)
	})
	t.Run("channels closed together by Close", func(t *testing.T) {
		tc, hs := setup(t, 3)
		c := tc.conn
		require.NoError(t, c.Feed(methodFrame(t, 2, &frames.BasicAck{DeliveryTag: 3})))
		requirePublishes(t, hs[2], []uint64{3}, next(t, c, EventConfirm).Publishes)
		require.NoError(t, c.Close(proto.Reply{}))
		requirePublishes(t, hs[1], []uint64{1, 2, 3, 4, 5}, next(t, c, EventChannelClosed).Publishes)
		requirePublishes(t, hs[2], []uint64{1, 2, 4, 5}, next(t, c, EventChannelClosed).Publishes)
		requirePublishes(t, hs[3], []uint64{1, 2, 3, 4, 5}, next(t, c, EventChannelClosed).Publishes)
		require.Equal(t, EventNone, c.NextEvent().Kind)
	})
	t.Run("channels abandoned together by the close timeout", func(t *testing.T) {
		tc, hs := setup(t, 2)
		c := tc.conn
		for ch := uint16(1); ch <= 2; ch++ {
			require.NoError(t, c.CloseChannel(ch, proto.Reply{}))
		}
		c.HandleTimeout(tc.now) // arms the close timers
		c.HandleTimeout(tc.now.Add(DefaultCloseTimeout))
		for ch := uint16(1); ch <= 2; ch++ {
			e := next(t, c, EventChannelClosed)
			require.ErrorIs(t, e.Err, ErrCloseTimeout)
			requirePublishes(t, hs[ch], []uint64{1, 2, 3, 4, 5}, e.Publishes)
		}
		require.Equal(t, EventNone, c.NextEvent().Kind)
	})
}

// headerlessReturn is a basic.return of an empty body for the publish to
// routing key rk on channel ch (content header and no body frame).
func headerlessReturn(t *testing.T, ch uint16, rk string) []byte {
	b, err := frames.AppendMessage(nil, ch, &frames.BasicReturn{ReplyCode: 312, RoutingKey: rk}, nil, nil, 0)
	require.NoError(t, err)
	return b
}

// TestPublishedRefsReleased: the machine keeps no ref of a settled
// publish: the confirm ring's slots and, once the events are drained, the
// arena are cleared, and an arena grown past maxIdlePublishes is dropped.
func TestPublishedRefsReleased(t *testing.T) {
	tests := []struct {
		name      string
		n         int    // publishes
		ack       uint64 // multiple ack up to
		keepArena bool
	}{
		{"small", 10, 10, true},
		{"partial", 10, 4, true},
		{"burst", maxIdlePublishes + 1, maxIdlePublishes + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newOpenConn(t, testConfig(), 0)
			tc.openChannel(1)
			c := tc.conn
			tc.call(1, &frames.ConfirmSelect{})
			tc.reply(1, frames.MethodConfirmSelect, &frames.ConfirmSelectOK{})
			for range tt.n {
				_, err := c.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, nil, nil, &handle{})
				require.NoError(t, err)
			}
			c.AppendOutbound(nil)
			require.NoError(t, c.Feed(methodFrame(t, 1, &frames.BasicAck{DeliveryTag: tt.ack, Multiple: true})))
			e := c.NextEvent()
			require.Equal(t, EventConfirm, e.Kind)
			require.Len(t, e.Publishes, int(tt.ack))
			require.Equal(t, EventNone, c.NextEvent().Kind)
			if tt.keepArena {
				require.NotZero(t, cap(c.pubs))
			} else {
				require.Zero(t, cap(c.pubs), "a burst's arena is dropped")
			}
			for i, p := range c.pubs[:cap(c.pubs)] {
				require.Nil(t, p.Ref, "arena entry %d keeps a ref", i)
			}
			o := &c.channel(1).confirms
			require.Equal(t, tt.n-int(tt.ack), o.Len())
			for i := range o.ring {
				seq := o.first + uint64((i-o.head+len(o.ring))%len(o.ring))
				if s := o.ring[i]; seq > tt.ack && seq <= uint64(tt.n) {
					require.NotNil(t, s.v, "publish %d lost its ref", seq)
				} else {
					require.Nil(t, s.v, "ring slot %d (publish %d) keeps a ref", i, seq)
				}
			}
		})
	}
}

// TestEventQueueShrinks: a burst of events (every channel closed at once)
// does not leave a large queue behind once drained.
func TestEventQueueShrinks(t *testing.T) {
	tc := newOpenConn(t, testConfig(), 0)
	for ch := range uint16(100) {
		id, err := tc.conn.OpenChannel()
		require.NoError(t, err)
		require.Equal(t, ch+1, id)
	}
	c := tc.conn
	c.AppendOutbound(nil)
	require.NoError(t, c.Close(proto.Reply{}))
	require.Greater(t, cap(c.events.buf), maxIdleEvents)
	for range 100 {
		require.Equal(t, EventChannelClosed, c.NextEvent().Kind)
	}
	require.Equal(t, EventNone, c.NextEvent().Kind)
	require.Zero(t, cap(c.events.buf), "the burst's queue is dropped")

	// A small queue is kept.
	tc = newOpenConn(t, testConfig(), 0)
	tc.openChannel(1)
	c = tc.conn
	require.NotZero(t, cap(c.events.buf))
	require.LessOrEqual(t, cap(c.events.buf), maxIdleEvents)
}

// TestReturnablesPruned: the mandatory publishes remembered to bind
// returns are forgotten once settled, also when settled out of order, and
// returns still find their publish in between.
func TestReturnablesPruned(t *testing.T) {
	type step struct {
		feed      func(tc *testConn)
		returnSeq uint64 // the return reported (0: none)
		confirm   bool
		remaining []uint64 // returnables still remembered
	}
	ret := func(tc *testConn) {
		tc.writeContent(1, &frames.BasicReturn{ReplyCode: 312, RoutingKey: "r"}, nil, []byte("b"))
	}
	ack := func(tag uint64, multiple bool) func(tc *testConn) {
		return func(tc *testConn) { tc.writeMethod(1, &frames.BasicAck{DeliveryTag: tag, Multiple: multiple}) }
	}
	steps := []step{
		{ack(2, false), 0, true, []uint64{1, 2, 3, 5}}, // 2 settled, but 1 is older
		{ret, 0, false, []uint64{1, 2, 3, 5}},          // held: binds to 1
		{ack(1, false), 1, true, []uint64{3, 5}},       // releases it; 1 and 2 go
		{ret, 0, false, []uint64{3, 5}},                // binds to 3
		{ack(4, false), 0, true, []uint64{3, 5}},       // 4 was not mandatory
		{ack(3, false), 3, true, []uint64{5}},
		{ack(6, true), 0, true, nil}, // everything settled
	}
	testAllModes(t, testConfig(), func(tc *testConn) {
		tc.handshake()
		tc.openChannel(1)
		tc.call(1, &frames.ConfirmSelect{})
		tc.reply(1, frames.MethodConfirmSelect, &frames.ConfirmSelectOK{})
		hs := make([]*handle, 7)
		for seq := uint64(1); seq <= 6; seq++ {
			hs[seq] = &handle{seq: seq}
			m := &frames.BasicPublish{RoutingKey: "r", Mandatory: seq != 4 && seq != 6}
			publishRef(tc, 1, seq, m, []byte("b"), hs[seq])
		}
		for i, s := range steps {
			s.feed(tc)
			if s.returnSeq != 0 {
				e := tc.wantEvent(EventReturn)
				require.Equal(tc.t, s.returnSeq, e.Message.PublishSeq, "step %d", i)
				require.Same(tc.t, hs[s.returnSeq], e.Message.PublishRef, "step %d", i)
			}
			if s.confirm {
				tc.wantEvent(EventConfirm)
			}
			tc.wantIdle()
			ch := tc.conn.channel(1)
			var remaining []uint64
			for _, p := range ch.returnables[ch.retHead:] {
				remaining = append(remaining, p.seq)
			}
			require.Equal(tc.t, s.remaining, remaining, "step %d", i)
			for _, p := range ch.returnables[:ch.retHead] {
				require.Equal(tc.t, returnable{}, p, "step %d: a forgotten publish is kept", i)
			}
		}
		require.Zero(tc.t, tc.conn.Unconfirmed(1))
	})
}
