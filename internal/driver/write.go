package driver

import (
	"time"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// idleRelease is how long a connection must go without reading or
// writing before the driver gives back what it holds for a busy one (the
// core's spare buffers, see onIdle), and how long the writer goroutine
// waits for more to write before it ends.
const idleRelease = time.Second

// pokeLocked is called, with mu held, after anything that may have queued
// bytes or moved the core's deadline: it re-arms the clock, and gets the
// writer goroutine going if bytes wait and nobody holds the write side
// (a holder takes what is pending, or pokes, when it is done).
func (d *Driver) pokeLocked() {
	d.armClockLocked()
	if !d.wbusy && (d.m.OutboundLen() > 0 || len(d.carry) > 0) {
		d.startWriterLocked()
	}
}

// unlockPoke is pokeLocked, then releases mu.
func (d *Driver) unlockPoke() {
	d.pokeLocked()
	d.mu.Unlock()
}

// startWriterLocked wakes the writer goroutine, or starts one: it exists
// only while there is writing to do (and idleRelease after).
func (d *Driver) startWriterLocked() {
	if d.writerRunning {
		select {
		case d.wake <- struct{}{}:
		default:
		}
		return
	}
	if d.stopped {
		return
	}
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	d.writerRunning = true
	d.wg.Add(1)
	go d.writeLoop()
}

// writeLoop is the writer goroutine: it writes what the core queues,
// everything pending in one write, while a write may block (a broker that
// stops reading); the clock goes on meanwhile (onClock). It sets no write
// deadlines: after one expires, a TLS connection refuses every later
// write. It ends once it has had nothing to write for idleRelease.
func (d *Driver) writeLoop() {
	defer d.wg.Done()
	var out []byte // the write buffer, kept while the writer runs
	var linger *time.Timer
	d.mu.Lock()
	wake := d.wake
	d.mu.Unlock()
	defer func() {
		if linger != nil {
			linger.Stop()
		}
		d.pool.put(out)
	}()
	idle := false
	for {
		var pending []byte
		d.mu.Lock()
		switch {
		case d.m.State() == statemachine.StateClosed:
			d.writerRunning = false
			d.mu.Unlock()
			return
		case !d.wbusy && (len(d.carry) > 0 || d.m.OutboundLen() > 0):
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
			d.noteActiveLocked()
		case idle: // a direct flush that is writing now pokes if it leaves anything
			d.writerRunning = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()

		if len(pending) > 0 {
			if !d.writeAll(pending) {
				return
			}
			idle = false
			continue
		}
		if linger == nil {
			linger = time.NewTimer(idleRelease)
		} else {
			linger.Reset(idleRelease)
		}
		select {
		case <-wake:
		case <-linger.C:
			idle = true
		case <-d.done:
			d.mu.Lock()
			d.writerRunning = false
			d.mu.Unlock()
			return
		}
	}
}

// writeAll writes p from the writer goroutine. On a write error the
// connection is lost: the core learns of it, the socket is closed, the
// writer ends, and writeAll reports false.
func (d *Driver) writeAll(p []byte) bool {
	for w := 0; w < len(p); {
		n, err := d.sock.write(p[w:])
		w += n
		d.mu.Lock()
		d.writing = len(p) - w
		d.wbusy = w < len(p)
		d.roomLocked()
		if err == nil {
			d.mu.Unlock()
			continue
		}
		d.log.Debug("amqp write failed", "error", err)
		d.wbusy = false
		d.writerRunning = false
		d.m.FeedEOF()
		d.mu.Unlock()
		d.kick()
		_ = d.sock.close()
		return false
	}
	return true
}

// armClockLocked sets the clock for the core's deadline, if it moved.
func (d *Driver) armClockLocked() {
	dl := d.m.Deadline()
	var at int64
	if !dl.IsZero() {
		at = dl.UnixNano()
	}
	if at == d.armed {
		return
	}
	d.armed = at
	if at == 0 {
		d.clock.Stop()
		return
	}
	d.clock.Reset(dl.Sub(d.now()))
}

// onClock runs when the core's deadline passes (a timer of its own, so
// that neither a blocked write nor a blocked read freezes the time): it
// passes the time in, writes what that queued (a heartbeat), and lets
// the socket's reader report what it caused.
func (d *Driver) onClock() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.armed = 0 // this timer has fired
	d.m.HandleTimeout(d.now())
	d.unlockWrite()
	d.kick()
}

// noteActiveLocked records that the connection read or wrote, so that
// onIdle does not find it idle, and arms onIdle's timer if it is not.
func (d *Driver) noteActiveLocked() {
	d.active = true
	if d.idle == nil && !d.stopped {
		d.idle = time.AfterFunc(idleRelease, d.onIdle)
	}
}

// onIdle runs idleRelease after activity: if the connection read or wrote
// meanwhile it looks again later; otherwise the connection has gone
// quiet, and the core gives back its spare buffers (and the timer goes,
// until the next activity).
func (d *Driver) onIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || d.idle == nil {
		return
	}
	if d.active {
		d.active = false
		d.idle.Reset(idleRelease)
		return
	}
	d.idle = nil
	if !d.wbusy {
		if b := d.m.ReleaseOutbound(); b != nil {
			d.pool.put(b)
		}
	}
	d.m.Trim()
	d.pool.dropRead()
}

// unlockWrite releases mu, writing what the core has queued from the
// calling goroutine when it can (directOKLocked), else leaving it to the
// writer goroutine (unlockPoke).
func (d *Driver) unlockWrite() {
	if d.directOKLocked() {
		d.flushDirectLocked()
	} else {
		d.unlockPoke()
	}
}

// directOKLocked reports whether the calling goroutine may write the
// core's bytes itself: the socket can write without blocking, nobody
// else holds the write side, and nothing written earlier waits.
func (d *Driver) directOKLocked() bool {
	return d.sock.fast() && !d.wbusy && len(d.carry) == 0 && d.m.OutboundLen() > 0 &&
		d.m.State() != statemachine.StateClosed
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
	d.noteActiveLocked()
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
	d.unlockPoke()
}

// roomLocked wakes publishers waiting for write-buffer room once there is
// some.
func (d *Driver) roomLocked() {
	if d.room != nil && !d.m.Blocked() && d.m.OutboundLen()+d.writing < d.limit {
		d.signalRoomLocked()
	}
}
