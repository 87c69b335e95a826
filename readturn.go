package warren

import (
	"context"
	"time"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// Who reads the socket.
//
// The reader goroutine normally reads the socket and drains the machine's
// events. On a request/response exchange (one publish at a time, waiting
// for each confirm; one RPC after another) that costs a goroutine hand-off
// per reply: the reader wakes, reads the reply, wakes the waiting goroutine
// (the scheduler starts a second thread for it) and goes back to sleep.
// That hand-off cost more CPU than the rest of the round trip. So when
// nothing else needs reading, the reader lends the socket out: the next
// goroutine that waits for a reply (Confirmation.Wait, an RPC) reads the
// socket itself, drains the events as the reader would, and returns with
// its answer, with no other goroutine woken.
//
// The rules, all under mu:
//   - The reader lends (rowner = ownNone) after a read in which a goroutine
//     blocked waiting for a reply (lendHint), when the connection is quiet:
//     open, no consumers, and nothing else awaited (quietLocked).
//   - A waiting goroutine takes a lent socket (ownWaiter) and reads until its
//     answer arrives or its context ends, then gives the socket back: lent
//     again if the connection is still quiet, else to the reader goroutine.
//   - Deliveries, handlers and the shutdown stay with the reader goroutine:
//     a waiter that reads any hands them over with the socket.
//   - Anything else that may block on the broker takes the socket back
//     (ensureReader), and so does a kick (kickReader). A socket nobody
//     took returns to the reader after the lend period (defaultLendPeriod),
//     so heartbeats and a broker's close are read within that time.
//
// Read deadlines interrupt whoever reads: kickReader uses them to make
// the reader drain events, and a waiter's context uses them to end its
// read.

// readOwner says who may read the socket and drain the machine's events.
type readOwner uint8

const (
	ownReader readOwner = iota // the reader goroutine
	ownNone                    // lent out, not taken: the reader goroutine is parked
	ownWaiter                  // a goroutine waiting for a reply reads for itself
)

// defaultLendPeriod bounds how long a lent socket may go unread.
const defaultLendPeriod = 5 * time.Millisecond

// turnStats counts how the socket changed hands (guarded by mu), for tests.
type turnStats struct {
	lent        int // times the reader lent the socket out
	waiterReads int // reads made by waiting goroutines
	handoffs    int // times a waiter handed deliveries or the shutdown to the reader
}

// maxQuietChannels bounds quietLocked's scan; a connection with more
// channels than this is never lent.
const maxQuietChannels = 32

// quietLocked reports whether nothing but a request/response waiter needs
// the socket read: the connection is open, nobody consumes, and nothing is
// awaited (replies, confirms, channel openings, write-buffer room).
func (c *Connection) quietLocked() bool {
	if c.raw == nil || c.m.State() != statemachine.StateOpen || len(c.opening) > 0 ||
		len(c.secretWaiters) > 0 || c.waitRoom != nil || c.blocked || len(c.chans) > maxQuietChannels {
		return false
	}
	for _, ch := range c.chans {
		if len(ch.waiters) > 0 || ch.confirms.Len() > 0 || len(ch.consumers) > 0 || ch.reopening != nil {
			return false
		}
	}
	return true
}

// lendLocked lends the socket out if the connection is quiet. The reader
// goroutine calls it, then parks in awaitTurn.
func (c *Connection) lendLocked() {
	if c.rowner != ownReader || !c.quietLocked() {
		return
	}
	c.rowner = ownNone
	c.lent.Store(true)
	c.turns.lent++
}

// releaseLocked gives back the socket a waiter read: lent again while the
// connection is quiet, else to the reader goroutine.
func (c *Connection) releaseLocked() {
	if c.quietLocked() {
		c.rowner = ownNone
		c.lent.Store(true)
		return
	}
	c.giveReaderLocked()
}

func (c *Connection) giveReaderLocked() {
	c.rowner = ownReader
	c.lent.Store(false)
	select {
	case c.rwake <- struct{}{}:
	default:
	}
}

// ensureReader takes a lent socket back for the reader goroutine. Call it
// before blocking on anything the broker must send, other than through
// readFor.
func (c *Connection) ensureReader() {
	if !c.lent.Load() {
		return
	}
	c.mu.Lock()
	if c.rowner == ownNone {
		c.giveReaderLocked()
	}
	c.mu.Unlock()
}

// awaitTurn parks the reader goroutine while the socket is lent out and
// returns once it is the reader's again, with the actions a waiter handed
// over. A socket nobody took comes back when the reader is woken
// (kickReader) or the lend period passes.
func (c *Connection) awaitTurn(t *time.Timer) []action {
	woken := false
	for {
		c.mu.Lock()
		if c.rowner == ownNone && woken {
			c.rowner = ownReader
			c.lent.Store(false)
		}
		if c.rowner == ownReader {
			h := c.handoff
			c.handoff = nil
			c.mu.Unlock()
			return h
		}
		period := c.lendPeriod
		c.mu.Unlock()
		t.Reset(period)
		select {
		case <-c.rwake:
		case <-t.C:
		}
		t.Stop()
		woken = true
	}
}

// readFor is called by a goroutine about to block until done is closed
// (its reply or confirm arrived). If the socket is lent out, it reads the
// socket itself until done is closed, ctx ends, or the reader goroutine
// must take over; the caller then waits on done as before. Otherwise it
// only notes that a goroutine blocked, so the reader lends the socket
// after its next read if the connection is quiet.
func (c *Connection) readFor(ctx context.Context, done <-chan struct{}) {
	if !c.lent.Load() {
		if c.raw != nil {
			c.lendHint.Store(true)
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if c.rowner != ownNone || c.m.State() != statemachine.StateOpen {
		c.mu.Unlock()
		return
	}
	c.rowner = ownWaiter
	c.lent.Store(false)
	c.watch.watch(ctx, c.nc)
	acts := c.wacts[:0]
	for {
		buf := c.m.ReadBuffer(readBufferSize)
		c.mu.Unlock()
		n, err := readInput(c.nc, c.raw, buf)
		c.mu.Lock()
		c.turns.waiterReads++
		acts = c.ingestLocked(n, err, acts)
		closed := c.m.State() == statemachine.StateClosed
		wake := closed || c.writerNeededLocked()
		if closed || readerWork(acts) {
			c.turns.handoffs++
			c.handoff = append(c.handoff, acts...)
			clear(acts)
			c.wacts = acts[:0]
			c.giveReaderLocked()
			c.mu.Unlock()
			if wake {
				c.wakeWriter()
			}
			break
		}
		finished := isClosed(done) || (n == 0 && ctx.Err() != nil)
		if finished && len(acts) == 0 {
			c.wacts = acts
			c.releaseLocked()
			c.mu.Unlock()
			if wake {
				c.wakeWriter()
			}
			break
		}
		c.mu.Unlock()
		if wake {
			c.wakeWriter()
		}
		c.perform(acts) // notifications only: nothing here blocks
		clear(acts)
		acts = acts[:0]
		c.mu.Lock()
		if finished {
			c.wacts = acts
			c.releaseLocked()
			c.mu.Unlock()
			break
		}
	}
}

// ctxWatch interrupts a reading waiter's read when its context ends. It
// keeps one registration for the last context seen, as callers usually
// pass the same context to one wait after another; registering anew each
// time would cost three allocations per wait. Only the socket's owner uses
// it. A watch that fires when no waiter reads makes the current reader
// read again, which is harmless.
type ctxWatch struct {
	done <-chan struct{}
	stop func() bool
}

func (w *ctxWatch) watch(ctx context.Context, nc interface{ SetReadDeadline(time.Time) error }) {
	done := ctx.Done()
	if done == nil || done == w.done {
		return
	}
	w.close()
	w.done = done
	w.stop = context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
}

// close drops the registration.
func (w *ctxWatch) close() {
	if w.stop != nil {
		w.stop()
	}
	w.done, w.stop = nil, nil
}

// readerWork reports whether acts hold work only the reader goroutine
// does: deliveries (which may block on a consumer, or run its handler).
func readerWork(acts []action) bool {
	for i := range acts {
		if acts[i].kind == actDeliver {
			return true
		}
	}
	return false
}

func isClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}
