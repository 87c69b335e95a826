package driver

import (
	"context"
	"time"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// owner says who may read the socket and drain the core's events.
type owner uint8

const (
	ownReader owner = iota // the reader goroutine
	ownNone                // lent out and not taken: the reader goroutine is parked
	ownWaiter              // a goroutine in Await reads for itself
)

// Await waits until done is closed or ctx ends, and returns nil or ctx's
// error. Every blocking call of the client waits here. A context bounds
// the wait, not what the broker does: a request whose wait ended still
// gets its reply consumed when it comes.
//
// When the socket is lent out (see the package documentation), the
// waiting goroutine reads it itself until done is closed, its context
// ends or the reader goroutine must take over; otherwise it notes that a
// goroutine blocked, so that the reader may lend the socket after its
// next read.
func (d *Driver) Await(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	default:
	}
	d.mu.Lock()
	d.awaiting.Add(1)
	switch d.rowner {
	case ownNone:
		if ctx.Err() == nil && d.quietLocked() {
			d.readFor(ctx, done) // returns with mu held
		} else {
			d.giveReaderLocked()
		}
	case ownReader:
		if d.sock.fast() {
			d.lendHint.Store(true)
		}
	}
	d.mu.Unlock()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // both: the result wins
		default:
			err = ctx.Err()
		}
	}
	d.awaiting.Add(-1)
	return err
}

// Reclaim gives a lent socket back to the reader goroutine. Call it before
// waiting for the broker by other means than Await (a caller about to
// block on a channel it was handed), so that the socket is read meanwhile.
func (d *Driver) Reclaim() {
	if !d.sock.fast() {
		return // never lent
	}
	// Under the lock, so that a lend decided by a read in progress (the
	// read that answered the caller, say) is seen and undone.
	d.mu.Lock()
	d.lendHint.Store(false)
	if d.rowner == ownNone {
		d.giveReaderLocked()
	}
	d.mu.Unlock()
}

// quietLocked reports whether nothing but one waiting goroutine needs the
// socket read: the connection is open and not blocked, no consumer may
// receive deliveries, nobody waits for write-buffer room, and at most one
// goroutine waits in Await (the one that will read).
func (d *Driver) quietLocked() bool {
	return d.sock.fast() && d.m.State() == statemachine.StateOpen && d.awaiting.Load() <= 1 &&
		!d.m.Consuming() && !d.m.Blocked() && d.room == nil && !d.performing
}

// lendLocked lends the socket out if the connection is quiet. The reader
// goroutine calls it, then parks in awaitTurn.
func (d *Driver) lendLocked() {
	if d.rowner != ownReader || !d.quietLocked() {
		return
	}
	if d.rwake == nil {
		d.rwake = make(chan struct{}, 1)
	}
	d.rowner = ownNone
}

// releaseLocked gives back the socket a waiter read: lent again while the
// connection is quiet, else to the reader goroutine.
func (d *Driver) releaseLocked() {
	if d.quietLocked() {
		d.rowner = ownNone
		return
	}
	d.giveReaderLocked()
}

func (d *Driver) giveReaderLocked() {
	d.rowner = ownReader
	d.wakeReaderLocked()
}

// awaitTurn parks the reader goroutine while the socket is lent out and
// returns once it is the reader's again. A socket nobody took comes back
// when the reader is woken (kick, Reclaim) or the lend period passes.
func (d *Driver) awaitTurn(t *time.Timer) {
	woken := false
	for {
		d.mu.Lock()
		if d.rowner == ownNone && woken {
			d.rowner = ownReader
		}
		if d.rowner == ownReader {
			d.mu.Unlock()
			return
		}
		period, rwake := d.lendPeriod, d.rwake
		d.mu.Unlock()
		t.Reset(period)
		select {
		case <-rwake:
		case <-t.C:
		}
		t.Stop()
		woken = true
	}
}

// readFor makes the calling goroutine, in Await, read the socket until
// done is closed, ctx ends or the reader goroutine must take over: when
// the events read queued work for Perform (deliveries) or the connection
// closed, the socket, that work and the shutdown go to the reader. Called
// and returns with mu held.
func (d *Driver) readFor(ctx context.Context, done <-chan struct{}) {
	d.rowner = ownWaiter
	d.watch.watch(ctx, d.sock)
	for {
		// Before every read, the first too: the answer may have come
		// between Await's first look at done and its taking the lock
		// (read by the reader goroutine, which then lent the socket), and
		// a read would then wait for bytes nobody owes this waiter, until
		// the next heartbeat tick's kick.
		if isClosed(done) || ctx.Err() != nil {
			d.releaseLocked()
			return
		}
		queued := d.readLocked()
		d.pokeLocked()
		if d.m.State() == statemachine.StateClosed || queued {
			d.handoff = d.handoff || queued
			d.giveReaderLocked()
			return
		}
	}
}

// ctxWatch interrupts a reading waiter's read when its context ends. It
// keeps one registration for the last context seen, as callers usually
// pass the same context to one wait after another; registering anew each
// time would cost three allocations per wait. Only the socket's reader
// uses it. A watch that fires when no waiter reads makes the current
// reader read again, which is harmless.
type ctxWatch struct {
	done <-chan struct{}
	stop func() bool
}

func (w *ctxWatch) watch(ctx context.Context, s socket) {
	done := ctx.Done()
	if done == nil || done == w.done {
		return
	}
	w.close()
	w.done = done
	w.stop = context.AfterFunc(ctx, func() { _ = s.setReadDeadline(aLongTimeAgo) })
}

// close drops the registration.
func (w *ctxWatch) close() {
	if w.stop != nil {
		w.stop()
	}
	w.done, w.stop = nil, nil
}

func isClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}
