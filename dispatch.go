package warren

import (
	"context"
	"errors"
	"sync"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// waiter is one synchronous request waiting for its reply.
type waiter struct {
	done  chan struct{}
	reply frames.Method
	msg   *Delivery // basic.get-ok
	err   error
}

func newWaiter() *waiter { return &waiter{done: make(chan struct{})} }

func (w *waiter) resolve(reply frames.Method, msg *Delivery, err error) {
	w.reply, w.msg, w.err = reply, msg, err
	close(w.done)
}

// wait returns the reply, or ctx's error if ctx ends first. A cancelled
// wait leaves the request in place: its reply is still consumed when it
// comes, so the channel stays in step. The context bounds the wait, not
// the broker's operation.
func (w *waiter) wait(ctx context.Context, c *Connection) (frames.Method, error) {
	select {
	case <-w.done:
		return w.reply, w.err
	default:
	}
	c.readFor(ctx, w.done)
	select {
	case <-w.done:
		return w.reply, w.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// actionKind says what perform does with an action.
type actionKind uint8

const (
	actDeliver     actionKind = iota // send a delivery to a consumer's channel
	actEndConsumer                   // close a consumer's channel
	actNotify                        // run a callback on the notifier goroutine
)

type action struct {
	kind actionKind
	cons *consumer
	d    Delivery
	fn   func()
}

// notifier runs user callbacks in order on its own goroutine, so a slow
// callback never stalls the reader and none is dropped.
type notifier struct {
	mu    sync.Mutex
	queue []func()
	wake  chan struct{}
}

func (n *notifier) init() { n.wake = make(chan struct{}, 1) }

func (n *notifier) post(fn func()) {
	n.mu.Lock()
	n.queue = append(n.queue, fn)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run executes callbacks until done is closed and the queue is empty.
func (n *notifier) run(done <-chan struct{}) {
	for {
		n.mu.Lock()
		q := n.queue
		n.queue = nil
		n.mu.Unlock()
		for _, fn := range q {
			fn()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-n.wake:
		case <-done:
			n.mu.Lock()
			rest := n.queue
			n.queue = nil
			n.mu.Unlock()
			for _, fn := range rest {
				fn()
			}
			return
		}
	}
}

func (c *Connection) markDying() {
	c.dyingOnce.Do(func() { close(c.dying) })
}

// drainLocked turns the machine's events into waiter resolutions (done
// here, they never block) and actions for perform. Event byte slices are
// copied into owned values here: the one copy of the client layer.
func (c *Connection) drainLocked(acts []action) []action {
	for {
		e := c.m.NextEvent()
		switch e.Kind {
		case statemachine.EventNone:
			return acts
		case statemachine.EventConnected:
			close(c.connected)
		case statemachine.EventChannelOpen:
			if w, ok := c.opening[e.Channel]; ok {
				delete(c.opening, e.Channel)
				w <- nil
			}
		case statemachine.EventReply:
			if e.Channel == 0 {
				if len(c.secretWaiters) > 0 {
					w := c.secretWaiters[0]
					c.secretWaiters = c.secretWaiters[1:]
					w.resolve(e.Method, nil, nil)
				}
				continue
			}
			ch := c.chans[e.Channel]
			if ch == nil || len(ch.waiters) == 0 {
				continue
			}
			w := ch.waiters[0]
			ch.waiters = ch.waiters[1:]
			var msg *Delivery
			if e.Request == frames.MethodBasicGet && e.Method.Key() == frames.MethodBasicGetOK {
				d := ch.delivery(&e.Message)
				msg = &d
			}
			acts = ch.onReplyLocked(acts, e.Method)
			w.resolve(e.Method, msg, nil)
		case statemachine.EventDelivery:
			ch := c.chans[e.Channel]
			if ch == nil {
				continue
			}
			cons := ch.consumerLocked(e.Message.ConsumerTag)
			if cons == nil {
				c.log.Warn("amqp delivery for an unknown consumer", "channel", e.Channel, "consumer_tag", e.Message.ConsumerTag)
				continue
			}
			d := ch.delivery(&e.Message)
			d.cons = cons
			acts = append(acts, action{kind: actDeliver, cons: cons, d: d})
		case statemachine.EventReturn:
			ch := c.chans[e.Channel]
			if ch == nil {
				continue
			}
			acts = ch.onReturnLocked(acts, &e.Message)
		case statemachine.EventConfirm:
			if ch := c.chans[e.Channel]; ch != nil {
				acts = ch.onConfirmLocked(acts, e.DeliveryTag, e.Multiple, e.Ack)
			}
		case statemachine.EventConsumerCancelled:
			if ch := c.chans[e.Channel]; ch != nil {
				acts = ch.onServerCancelLocked(acts, e.ConsumerTag)
			}
		case statemachine.EventFlow:
			if ch := c.chans[e.Channel]; ch != nil {
				ch.flowActive = e.Active
				c.roomLocked()
			}
		case statemachine.EventBlocked, statemachine.EventUnblocked:
			c.blocked = e.Kind == statemachine.EventBlocked
			b := Blocking{Active: c.blocked, Reason: e.Reason}
			for _, sub := range c.blockSubs {
				select {
				case sub <- b:
				default:
					c.log.Warn("amqp blocked notification dropped: receiver not ready", "active", b.Active)
				}
			}
			c.roomLocked()
		case statemachine.EventMessageTooLarge:
			c.log.Warn("amqp message over MaxMessageSize skipped", "channel", e.Channel, "size", e.Message.BodySize, "delivery_tag", e.Message.DeliveryTag)
		case statemachine.EventChannelClosed:
			if w, ok := c.opening[e.Channel]; ok {
				delete(c.opening, e.Channel)
				err := e.Err
				if err == nil {
					err = ErrClosed
				}
				w <- err
			}
			if ch := c.chans[e.Channel]; ch != nil {
				delete(c.chans, e.Channel)
				acts = ch.onClosedLocked(acts, e.Err)
			}
		case statemachine.EventClosed:
			c.err = e.Err
			for _, w := range c.secretWaiters {
				w.resolve(nil, nil, c.closedErrLocked())
			}
			c.secretWaiters = nil
			var ce *proto.ConnectionError
			asConnErr(e.Err, &ce)
			for _, sub := range c.closeSubs {
				if ce != nil {
					select {
					case sub <- ce:
					default:
						c.log.Warn("amqp close notification dropped: receiver not ready")
					}
				}
				close(sub)
			}
			c.closeSubs = nil
			for _, sub := range c.blockSubs {
				close(sub)
			}
			c.blockSubs = nil
			if c.waitRoom != nil {
				close(c.waitRoom)
				c.waitRoom = nil
			}
			c.markDying()
			if e.Err != nil {
				c.log.Info("amqp connection closed", "error", e.Err)
			}
		}
	}
}

// perform carries out actions outside the lock. A delivery waits for room
// in its consumer's buffer (back-pressure on the socket), unless the
// consumer is cancelled or the connection is dying.
func (c *Connection) perform(acts []action) {
	handled := false
	defer func() {
		// Acks made by handlers did not wake the writer one by one: write
		// them all now, from here when the socket takes them, before the
		// reader waits for more input.
		if handled {
			c.flushDirect()
		}
	}()
	for i := range acts {
		a := &acts[i]
		switch a.kind {
		case actDeliver:
			if a.cons.ended {
				continue
			}
			if a.cons.handler != nil {
				handled = true
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
			case <-c.dying:
			}
		case actEndConsumer:
			if !a.cons.ended {
				a.cons.ended = true
				close(a.cons.deliveries)
			}
		case actNotify:
			c.notify.post(a.fn)
		}
	}
}

func asConnErr(err error, target **proto.ConnectionError) bool { return errors.As(err, target) }
