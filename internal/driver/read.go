package driver

import (
	"errors"
	"net"
	"time"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// readLoop is the reader goroutine. It reads the socket and drains the
// core's events, except while it has lent the socket to a waiting
// goroutine (lend.go); then it parks until the socket comes back. It alone
// runs Handler.Perform, and it shuts the driver down once the core has
// closed.
func (d *Driver) readLoop() {
	defer d.wg.Done()
	var park *time.Timer // made when the socket is first lent
	defer func() {
		if park != nil {
			park.Stop()
		}
	}()
	for {
		var queued, read bool
		d.mu.Lock()
		if d.rowner != ownReader {
			d.mu.Unlock()
			if park == nil {
				park = time.NewTimer(time.Hour)
				park.Stop()
			}
			d.awaitTurn(park)
			d.mu.Lock()
			// Catch up with what happened while the socket was lent: what
			// a waiter handed over, events a timeout or a command caused.
			queued = d.handoff
			d.handoff = false
			queued = d.drainLocked() || queued
		} else {
			queued = d.readLocked()
			read = true
		}
		closed := d.m.State() == statemachine.StateClosed
		// Lend only after a read in which a goroutine blocked waiting: not
		// right after taking the socket back, which is why it came back.
		lend := read && !closed && d.lendHint.Load() && d.lendHint.Swap(false)
		if lend && !queued {
			d.lendLocked()
			lend = false
		}
		d.performing = queued
		if read {
			// What the core queued in answer (handshake, close-ok, flow-ok)
			// goes out from here: the reader is about to wait for input.
			d.unlockWrite()
		} else {
			d.unlockPoke()
		}
		if queued {
			d.h.Perform()
			d.mu.Lock()
			d.performing = false
			if d.batched { // the handlers' acks, written before the next read
				d.batched = false
				d.unlockWrite()
			} else {
				d.mu.Unlock()
			}
		}
		if closed {
			d.shutdown()
			return
		}
		if lend { // after Perform, so that what it did comes before what a waiter reads next
			d.mu.Lock()
			d.lendLocked()
			d.mu.Unlock()
		}
	}
}

// minRead is the least free space a read into the core's buffer gets.
const minRead = 4 << 10

// readLocked reads the socket once, with the lock released during the
// read, and feeds and drains the core. It reports whether the handler
// queued work. Called with mu held by the socket's reader.
func (d *Driver) readLocked() (queued bool) {
	// A partial frame is completed in the core's own buffer; otherwise the
	// socket takes a pooled buffer once data is there, and the core adopts
	// it.
	var buf []byte
	partial := d.m.HasInput()
	if partial {
		// Room for the rest of the frame and more: the core grows its
		// buffer only when less than minRead is free.
		buf = d.m.ReadBuffer(minRead)
	}
	d.mu.Unlock()
	buf, n, err := d.sock.read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// Read deadlines only ever interrupt a read: a kick, or a
			// reading waiter's context that ended.
			_ = d.sock.setReadDeadline(time.Time{})
			err = nil
		}
	}
	d.mu.Lock()
	if n > 0 {
		d.noteActiveLocked()
	}
	switch {
	case n > 0 && partial:
		_ = d.m.Received(n)
	case n > 0:
		_ = d.m.Adopt(buf[:n])
	case !partial && buf != nil:
		d.pool.putRead(buf)
	}
	if err != nil {
		d.log.Debug("amqp read ended", "error", err)
		d.m.FeedEOF()
	}
	queued = d.drainLocked()
	if b := d.m.ReleaseInput(); b != nil {
		d.pool.putRead(b)
	}
	return queued
}

// drainLocked hands every pending event to the handler and notes what
// the driver itself needs to know: whether publishers may have room again
// and whether the connection is ending.
func (d *Driver) drainLocked() (queued bool) {
	room := false
	for {
		// A field, not a local: a local's address handed to the Handler
		// interface would escape, an allocation per event.
		d.ev = d.m.NextEvent()
		e := &d.ev
		switch e.Kind {
		case statemachine.EventNone:
			if room {
				d.signalRoomLocked()
			}
			if d.m.State() >= statemachine.StateClosing {
				d.markDying()
			}
			return queued
		case statemachine.EventFlow, statemachine.EventBlocked, statemachine.EventUnblocked,
			statemachine.EventChannelClosed, statemachine.EventClosed:
			room = true
		}
		if d.h.Event(d.m, e) {
			queued = true
		}
	}
}

// shutdown runs once, in the reader, after the core has closed.
func (d *Driver) shutdown() {
	d.mu.Lock()
	d.stopped = true
	d.clock.Stop()
	if d.idle != nil {
		d.idle.Stop()
	}
	d.watch.close()
	d.signalRoomLocked()
	d.mu.Unlock()
	d.markDying()
	_ = d.sock.close()
	if d.onShutdown != nil {
		d.onShutdown()
	}
	close(d.done)
}
