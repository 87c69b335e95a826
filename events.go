package warren

import (
	"context"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// waiter is one request waiting for its reply.
type waiter struct {
	ch     *Channel // nil for connection-level requests
	secret bool     // an update-secret
	done   chan struct{}
	reply  frames.Method
	msg    *Delivery // basic.get-ok
	err    error
}

// awaitReplyLocked registers a waiter for the request the core gave
// token tok (on channel ch, nil for the connection's own requests),
// releases the driver's lock writing the request out, and waits for the
// reply or ctx. The error is ctx's; the request's own outcome is in the
// waiter.
func (c *Connection) awaitReplyLocked(ctx context.Context, ch *Channel, tok statemachine.Token) (*waiter, error) {
	return c.awaitWaiterLocked(ctx, &waiter{ch: ch, done: make(chan struct{})}, tok)
}

// awaitWaiterLocked is awaitReplyLocked with the waiter made by the
// caller.
func (c *Connection) awaitWaiterLocked(ctx context.Context, w *waiter, tok statemachine.Token) (*waiter, error) {
	c.requests[tok] = w
	c.unlock(driver.FlushNow)
	if err := c.await(ctx, w.done); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *waiter) resolve(reply frames.Method, msg *Delivery, err error) {
	w.reply, w.msg, w.err = reply, msg, err
	close(w.done)
}

// actionKind says what Perform does with an action.
type actionKind uint8

const (
	actDeliver     actionKind = iota // hand a delivery to its consumer
	actEndConsumer                   // close a consumer's Deliveries channel
)

// action is work that may block, done outside the driver's lock on the
// reader goroutine.
type action struct {
	kind    actionKind
	channel uint16 // the delivery's channel number (for Config.Observer)
	cons    *consumer
	d       Delivery
}

// events is the Connection as one driver sees it: that driver's
// driver.Handler. Each driver a Connection has (one, then one per
// recovery) gets its own, which tells the handshake's outcome apart from
// the connection's.
type events struct {
	c         *Connection
	d         *driver.Driver
	connected chan struct{} // closed when the handshake ends, either way
	err       error         // why the handshake failed
	opened    bool          // the handshake succeeded
	final     bool          // the connection ended for good with this driver
}

// Event turns one event of the core into what the application sees:
// waiters resolved, handles updated, notifications posted, and deliveries
// queued for Perform. It runs with the driver's lock held and never
// blocks. Byte slices of the event are copied here: the one copy of the
// client layer.
func (h *events) Event(m *statemachine.Conn, e *statemachine.Event) bool {
	c := h.c
	queued := len(c.acts)
	switch e.Kind {
	case statemachine.EventConnected:
		h.opened = true
		close(h.connected)
	case statemachine.EventChannelOpen:
		if ch := c.chans[e.Channel]; ch != nil {
			ch.openedLocked(nil)
			// Consumers a recovery could not restore end here, on the
			// reader, behind any delivery still queued for them.
			for _, cons := range c.ending[ch] {
				c.acts = append(c.acts, action{kind: actEndConsumer, cons: cons})
			}
			delete(c.ending, ch)
		}
	case statemachine.EventReply:
		c.onReplyLocked(e)
	case statemachine.EventDelivery:
		ch := c.chans[e.Channel]
		if ch == nil {
			break
		}
		cons := ch.consumerLocked(e.Message.ConsumerTag)
		if cons == nil {
			c.log.Warn("amqp delivery for an unknown consumer", "channel", e.Channel, "consumer_tag", e.Message.ConsumerTag)
			break
		}
		d := ch.delivery(&e.Message)
		d.cons = cons
		c.acts = append(c.acts, action{kind: actDeliver, channel: e.Channel, cons: cons, d: d})
	case statemachine.EventReturn:
		if ch := c.chans[e.Channel]; ch != nil {
			ch.onReturnLocked(&e.Message)
		}
	case statemachine.EventConfirm:
		if ch := c.chans[e.Channel]; ch != nil {
			ch.onConfirmLocked(e)
		}
	case statemachine.EventConsumerCancelled:
		if ch := c.chans[e.Channel]; ch != nil {
			ch.onServerCancelLocked(e.ConsumerTag)
		}
	case statemachine.EventBlocked, statemachine.EventUnblocked:
		b := Blocking{Active: e.Kind == statemachine.EventBlocked, Reason: e.Reason, Changes: 1}
		c.blocked = b.Active
		for _, l := range c.lis.blockers() {
			l.post(b)
		}
		if obs := c.cfg.Observer; obs != nil {
			obs.Blocked(b)
		}
	case statemachine.EventMessageTooLarge:
		c.log.Warn("amqp message over MaxMessageSize skipped", "channel", e.Channel, "size", e.Message.BodySize, "delivery_tag", e.Message.DeliveryTag)
	case statemachine.EventChannelClosed:
		if ch := c.chans[e.Channel]; ch != nil {
			delete(c.chans, e.Channel)
			ch.onClosedLocked(m, e)
		}
	case statemachine.EventClosed:
		if !h.opened { // the handshake failed: the dialler learns why
			h.err = e.Err
			close(h.connected)
			break
		}
		c.onClosedLocked(h, e.Err)
	}
	return len(c.acts) > queued
}

// onReplyLocked resolves the request e answers (or reports failed).
func (c *Connection) onReplyLocked(e *statemachine.Event) {
	w := c.requests[e.Token]
	if w == nil {
		return // a request replayed on a reopened channel: nobody waits
	}
	delete(c.requests, e.Token)
	if w.secret && e.Err == nil {
		// Answered. (A refusal closes the connection: the close that
		// fails this request must still see the update-secret pending,
		// so that the loss reads as ErrSecretRefused.)
		c.secretPending--
	}
	if e.Err != nil {
		w.resolve(nil, nil, e.Err)
		return
	}
	var msg *Delivery
	if w.ch != nil {
		switch reply := e.Method.(type) {
		case *frames.BasicGetOK:
			d := w.ch.delivery(&e.Message)
			msg = &d
		case *frames.BasicCancelOK:
			w.ch.onCancelOKLocked(reply.ConsumerTag)
		}
	}
	w.resolve(e.Method, msg, nil)
}

// onClosedLocked handles the end of the current driver's connection:
// a recovery starts if the loss is one it handles; otherwise the
// connection ends for good.
func (c *Connection) onClosedLocked(h *events, err error) {
	switch {
	case c.state == ConnRecovering:
		// A driver of the recovery itself died while restoring: the
		// recovery goroutine notices and dials again.
	case c.recoversLocked(err):
		c.startRecoveryLocked(h.d, c.lossErr(err))
	default:
		h.final = true
		c.endLocked(err)
	}
}

// endLocked ends the connection for good: calls waiting at the gate, the
// listeners and the channels learn it; Done closes once the last driver's
// goroutines end.
func (c *Connection) endLocked(err error) {
	if c.creds != nil {
		c.creds.stopRefresh()
		if cause := c.creds.takeCause(); cause != nil {
			err = cause // closed because the secret expired
		}
	}
	c.ended = true
	c.state = ConnClosed
	c.err = err
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
	for _, l := range c.lis.closers() {
		if err != nil {
			l.post(err)
		}
		l.close()
	}
	for _, l := range c.lis.blockers() {
		l.close()
	}
	for _, l := range c.lis.recoverers() {
		l.close()
	}
	c.lis = nil
	for ch := range c.between {
		ch.finishLocked() // the open ones were finished by their EventChannelClosed
	}
	if err != nil {
		c.log.Info("amqp connection closed", "error", err)
	}
	if obs := c.cfg.Observer; obs != nil {
		obs.Connection(ConnectionEvent{Kind: ConnectionClosed, Err: err})
	}
}

// shutdown runs when the driver's socket has closed (driver.Options.
// OnShutdown): Done closes if the connection ended with it.
func (h *events) shutdown() {
	if h.final {
		h.c.closeDone()
	}
}

// Perform hands deliveries to consumers, in order, on the reader
// goroutine. A delivery waits for room in its consumer's buffer
// (back-pressure on the socket), unless the consumer has ended or the
// connection is dying.
func (h *events) Perform() {
	c := h.c
	acts := c.acts
	for i := range acts {
		a := &acts[i]
		switch a.kind {
		case actDeliver:
			if a.cons.ended {
				continue
			}
			if c.cfg.Observer != nil {
				h.deliverObserved(a)
				continue
			}
			if a.cons.handler != nil {
				c.inHandler.Store(true)
				a.cons.handler(a.d)
				c.inHandler.Store(false)
				continue
			}
			h.deliver(a)
		case actEndConsumer:
			if !a.cons.ended {
				a.cons.ended = true
				if len(a.cons.overflow) > 0 {
					go drainOverflow(a.cons.deliveries, a.cons.overflow, c.Done())
					a.cons.overflow = nil
				} else {
					close(a.cons.deliveries)
				}
			}
		}
	}
	clear(acts)
	c.acts = acts[:0]
}

// deliver sends a delivery to its consumer's Deliveries buffer, waiting
// for room unless the consumer is cancelling or the connection dying.
func (h *events) deliver(a *action) {
	if len(a.cons.overflow) > 0 { // behind those already kept
		a.cons.overflow = append(a.cons.overflow, a.d)
		return
	}
	// A plain non-blocking send first: it succeeds while the buffer has
	// room, and costs far less than a select.
	select {
	case a.cons.deliveries <- a.d:
		return
	default:
	}
	select {
	case a.cons.deliveries <- a.d:
	case <-a.cons.cancelling: // Cancel waits for a cancel-ok behind this
		a.cons.overflow = append(a.cons.overflow, a.d)
	case <-h.d.Dying():
	}
}

// deliverObserved hands a delivery over as Perform does, between
// Config.Observer's Delivery and HandedOff hooks.
func (h *events) deliverObserved(a *action) {
	c := h.c
	do := c.observeDelivery(a)
	if a.cons.handler != nil {
		c.inHandler.Store(true)
		a.cons.handler(a.d)
		c.inHandler.Store(false)
	} else {
		h.deliver(a)
	}
	if do != nil {
		do.HandedOff()
	}
}

// drainOverflow hands a cancelled consumer's kept deliveries to the
// application, then closes its Deliveries channel. It ends then, or when
// the connection ends for good (done): the deliveries not yet received
// are dropped then, as those waiting for a full buffer are when a
// connection dies (the broker requeues a manual-ack consumer's).
func drainOverflow(deliveries chan Delivery, kept []Delivery, done <-chan struct{}) {
	defer close(deliveries)
	for _, d := range kept {
		select {
		case deliveries <- d:
		case <-done:
			return
		}
	}
}
