package driver

import (
	"time"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// idleRelease is how long the writer goroutine waits, with nothing to
// write, before it gives the write buffers back (its own and the core's).
const idleRelease = time.Second

// writeLoop is the writer goroutine, and it owns the clock: it writes
// what the core queues (everything pending in one write) and passes the
// time in at the core's deadlines. While a write blocks (a broker that
// stops reading), a timer keeps passing the time in (writeTick), so that
// heartbeats and timeouts are not frozen. It sets no write deadlines:
// after one expires, a TLS connection refuses every later write.
func (d *Driver) writeLoop() {
	defer d.wg.Done()
	defer d.wtick.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	var out []byte // the write buffer, kept between writes while busy
	holding := false
	for {
		var pending []byte
		d.mu.Lock()
		if !d.wbusy && (len(d.carry) > 0 || d.m.OutboundLen() > 0) { // else a direct flush writes; it wakes us if need be
			if out == nil {
				out = d.pool.get()
			}
			out = out[:0]
			if len(d.carry) > 0 { // what a direct flush left goes first
				out = append(out, d.carry...)
				d.pool.put(d.carryBuf)
				d.carry, d.carryBuf = nil, nil
			}
			out = d.m.AppendOutbound(out)
			pending = out
			d.writing = len(out)
			d.wbusy = true
		}
		deadline := d.m.Deadline()
		d.armed = deadline
		closed := d.m.State() == statemachine.StateClosed
		d.mu.Unlock()

		if len(pending) > 0 {
			if !deadline.IsZero() {
				d.wtick.Reset(deadline.Sub(d.now()))
			}
			ok := d.writeAll(pending)
			d.wtick.Stop()
			if !ok {
				return
			}
			if cap(out) == poolBufSize { // a usual one goes back at once; a larger one waits for idleRelease
				d.pool.put(out)
				out = nil
			}
			holding = true
		}
		if closed {
			return
		}
		if !deadline.IsZero() {
			timer.Reset(deadline.Sub(d.now()))
		}
		if holding {
			idle.Reset(idleRelease)
		}
		select {
		case <-d.wake:
		case <-timer.C:
			d.tick()
		case <-idle.C:
			d.mu.Lock()
			if b := d.m.ReleaseOutbound(); b != nil {
				d.pool.put(b)
			}
			d.mu.Unlock()
			out, holding = nil, false
		case <-d.done:
			return
		}
		timer.Stop()
		idle.Stop()
	}
}

// writeAll writes p from the writer goroutine. On a write error the
// connection is lost: the core learns of it, the socket is closed, and
// writeAll reports false.
func (d *Driver) writeAll(p []byte) bool {
	for w := 0; w < len(p); {
		n, err := d.sock.write(p[w:])
		w += n
		d.mu.Lock()
		d.writing = len(p) - w
		d.wbusy = w < len(p)
		d.roomLocked()
		d.mu.Unlock()
		if err == nil {
			continue
		}
		d.log.Debug("amqp write failed", "error", err)
		d.mu.Lock()
		d.wbusy = false
		d.m.FeedEOF()
		d.mu.Unlock()
		d.kick()
		_ = d.sock.close()
		return false
	}
	return true
}

// writeTick passes the time in while the writer is blocked in a write,
// and re-arms itself for the core's next deadline until the write ends
// (wbusy; a direct flush sets it too, but never blocks, and a tick before
// a deadline is harmless).
func (d *Driver) writeTick() {
	d.tick()
	d.mu.Lock()
	if dl := d.m.Deadline(); d.wbusy && !dl.IsZero() {
		d.wtick.Reset(dl.Sub(d.now()))
	}
	d.mu.Unlock()
}

// tick passes the time in and lets the socket's reader report what it
// caused.
func (d *Driver) tick() {
	d.mu.Lock()
	d.m.HandleTimeout(d.now())
	d.mu.Unlock()
	d.kick()
}

// directOKLocked reports whether the calling goroutine may write the
// core's bytes itself: the socket can write without blocking, nobody
// else holds the write side, and nothing written earlier waits.
func (d *Driver) directOKLocked() bool {
	return d.sock.fast() && !d.wbusy && len(d.carry) == 0 && d.m.OutboundLen() > 0 &&
		d.m.State() == statemachine.StateOpen
}

// flushDirectLocked writes what the core has queued from the calling
// goroutine, which is about to wait for the broker: on a request/response
// exchange, waking the writer goroutine costs more CPU than the write
// itself. What the socket does not take now is carried over to the
// writer, which writes it before anything newer (and meets any write
// error again). Called with mu held and directOKLocked true; it returns
// with mu released.
func (d *Driver) flushDirectLocked() {
	d.wbusy = true
	buf := d.m.AppendOutbound(d.pool.get()[:0])
	d.writing = len(buf)
	d.mu.Unlock()

	n, _ := d.sock.tryWrite(buf)

	d.mu.Lock()
	d.wbusy = false
	if n < len(buf) {
		d.carry, d.carryBuf = buf[n:], buf
	} else {
		d.pool.put(buf)
	}
	d.writing = len(d.carry)
	d.roomLocked()
	d.unlockWakeIf(d.writerNeededLocked())
}

// writerNeededLocked reports whether the writer has something to do: bytes
// to write, or a deadline earlier than the one its timer is set for. It is
// woken only then, sparing a goroutine switch per read.
func (d *Driver) writerNeededLocked() bool {
	return d.m.OutboundLen() > 0 || len(d.carry) > 0 || d.deadlineMovedLocked()
}

// deadlineMovedLocked reports whether the core's deadline is earlier than
// the one the writer's timer is set for.
func (d *Driver) deadlineMovedLocked() bool {
	dl := d.m.Deadline()
	return !dl.IsZero() && (d.armed.IsZero() || dl.Before(d.armed))
}

// roomLocked wakes publishers waiting for write-buffer room once there is
// some.
func (d *Driver) roomLocked() {
	if d.room != nil && !d.m.Blocked() && d.m.OutboundLen()+d.writing < d.limit {
		d.signalRoomLocked()
	}
}

func (d *Driver) wakeWriter() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// unlockWake releases mu and wakes the writer.
func (d *Driver) unlockWake() {
	d.mu.Unlock()
	d.wakeWriter()
}

// unlockWakeIf releases mu and wakes the writer if need.
func (d *Driver) unlockWakeIf(need bool) {
	d.mu.Unlock()
	if need {
		d.wakeWriter()
	}
}
