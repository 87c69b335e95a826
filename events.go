package warren

import (
	"context"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// waiter is one request waiting for its reply.
type waiter struct {
	ch    *Channel // nil for connection-level requests
	done  chan struct{}
	reply frames.Method
	msg   *Delivery // basic.get-ok
	err   error
}

// awaitReplyLocked registers a waiter for the request the core gave
// token tok (on channel ch, nil for the connection's own requests),
// releases the driver's lock writing the request out, and waits for the
// reply or ctx. The error is ctx's; the request's own outcome is in the
// waiter.
func (c *Connection) awaitReplyLocked(ctx context.Context, ch *Channel, tok statemachine.Token) (*waiter, error) {
	w := &waiter{ch: ch, done: make(chan struct{})}
	c.requests[tok] = w
	c.d.Unlock(driver.FlushNow)
	if err := c.d.Await(ctx, w.done); err != nil {
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
	kind actionKind
	cons *consumer
	d    Delivery
}

// events is the Connection as the driver sees it: its driver.Handler.
// (A separate type, so that Event and Perform stay out of Connection's
// API.)
type events Connection

// Event turns one event of the core into what the application sees:
// waiters resolved, handles updated, notifications posted, and deliveries
// queued for Perform. It runs with the driver's lock held and never
// blocks. Byte slices of the event are copied here: the one copy of the
// client layer.
func (h *events) Event(m *statemachine.Conn, e *statemachine.Event) bool {
	c := (*Connection)(h)
	queued := len(c.acts)
	switch e.Kind {
	case statemachine.EventConnected:
		c.opened = true
		close(c.connected)
	case statemachine.EventChannelOpen:
		if ch := c.chans[e.Channel]; ch != nil {
			ch.openedLocked(nil)
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
		c.acts = append(c.acts, action{kind: actDeliver, cons: cons, d: d})
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
		for _, l := range c.blockListeners {
			l.post(b)
		}
	case statemachine.EventMessageTooLarge:
		c.log.Warn("amqp message over MaxMessageSize skipped", "channel", e.Channel, "size", e.Message.BodySize, "delivery_tag", e.Message.DeliveryTag)
	case statemachine.EventChannelClosed:
		if ch := c.chans[e.Channel]; ch != nil {
			delete(c.chans, e.Channel)
			ch.onClosedLocked(m, e)
		}
	case statemachine.EventClosed:
		c.onClosedLocked(e.Err)
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

// onClosedLocked handles the end of the connection: the handshake waiter
// and the listeners learn why.
func (c *Connection) onClosedLocked(err error) {
	c.ended = true
	c.err = err
	if !c.opened {
		close(c.connected)
	}
	for _, l := range c.closeListeners {
		if err != nil {
			l.post(err)
		}
		l.close()
	}
	c.closeListeners = nil
	for _, l := range c.blockListeners {
		l.close()
	}
	c.blockListeners = nil
	for ch := range c.between {
		ch.finishLocked() // the open ones were finished by their EventChannelClosed
	}
	if err != nil {
		c.log.Info("amqp connection closed", "error", err)
	}
}

// Perform hands deliveries to consumers, in order, on the reader
// goroutine. A delivery waits for room in its consumer's buffer
// (back-pressure on the socket), unless the consumer has ended or the
// connection is dying.
func (h *events) Perform() {
	c := (*Connection)(h)
	acts := c.acts
	for i := range acts {
		a := &acts[i]
		switch a.kind {
		case actDeliver:
			if a.cons.ended {
				continue
			}
			if a.cons.handler != nil {
				c.inHandler.Store(true)
				a.cons.handler(a.d)
				c.inHandler.Store(false)
				continue
			}
			// A plain non-blocking send first: it succeeds while the
			// buffer has room, and costs far less than a two-way select.
			select {
			case a.cons.deliveries <- a.d:
				continue
			default:
			}
			select {
			case a.cons.deliveries <- a.d:
			case <-c.d.Dying():
			}
		case actEndConsumer:
			if !a.cons.ended {
				a.cons.ended = true
				close(a.cons.deliveries)
			}
		}
	}
	clear(acts)
	c.acts = acts[:0]
}
