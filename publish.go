package warren

import (
	"context"
	"fmt"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Publishing is a message to publish.
type Publishing struct {
	// Mandatory asks the broker to return the message (basic.return) when
	// no queue takes it.
	Mandatory bool
	// Immediate is refused by RabbitMQ, which closes the connection with
	// 540 NOT_IMPLEMENTED; it is offered for other brokers.
	Immediate bool
	// Properties are the message properties, headers included.
	Properties proto.Properties
	// Body is the message body; Publish copies it before returning.
	Body []byte
}

// Confirmation is the outcome of one publish in confirm mode. It resolves
// exactly once: acked, nacked, or failed because the channel or connection
// closed first (then the publish may or may not have reached the broker).
type Confirmation struct {
	// Seq is the publish's sequence number: the delivery tag of its confirm.
	Seq  uint64
	conn *Connection
	done chan struct{}
	ack  bool
	ret  *Return
	err  error
}

func (cf *Confirmation) resolve(ack bool, err error) {
	cf.ack, cf.err = ack, err
	close(cf.done)
}

// Done is closed when the outcome is known.
func (cf *Confirmation) Done() <-chan struct{} {
	cf.conn.ensureReader() // the caller may block on it: the socket must be read
	return cf.done
}

// Wait waits for the outcome: acked reports basic.ack (true) or basic.nack
// (false); err is non-nil when the channel or connection closed first
// (wrapping ErrMaybeSent) or ctx ended.
func (cf *Confirmation) Wait(ctx context.Context) (acked bool, err error) {
	select {
	case <-cf.done:
		return cf.ack, cf.err
	default:
	}
	cf.conn.readFor(ctx, cf.done)
	select {
	case <-cf.done:
		return cf.ack, cf.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Returned returns the basic.return that came back for this publish, or
// nil. Valid once Done is closed.
func (cf *Confirmation) Returned() *Return { return cf.ret }

// Publish publishes msg to exchange with routingKey. The context bounds
// the wait for room in the write buffer and for a blocked connection or a
// paused channel; once Publish returns nil the message is queued and
// cannot be unsent. In confirm mode, use PublishWithConfirm to learn its
// outcome.
func (ch *Channel) Publish(ctx context.Context, exchange, routingKey string, msg Publishing) error {
	_, err := ch.publish(ctx, exchange, routingKey, &msg, false)
	return err
}

// PublishWithConfirm publishes msg on a channel in confirm mode (see
// Confirm) and returns the handle that resolves with the broker's ack or
// nack. An error means nothing was sent.
func (ch *Channel) PublishWithConfirm(ctx context.Context, exchange, routingKey string, msg Publishing) (*Confirmation, error) {
	return ch.publish(ctx, exchange, routingKey, &msg, true)
}

func (ch *Channel) publish(ctx context.Context, exchange, routingKey string, msg *Publishing, wantConfirm bool) (*Confirmation, error) {
	c := ch.conn
	c.mu.Lock()
	for {
		switch {
		case !ch.openLocked():
			c.mu.Unlock()
			if err := ch.ready(ctx); err != nil {
				return nil, err
			}
			c.mu.Lock()
			continue
		case c.m.State() != statemachine.StateOpen:
			err := c.closedErrLocked()
			c.mu.Unlock()
			return nil, err
		}
		if ch.flowActive && c.hasRoomLocked() {
			break
		}
		room := c.roomChanLocked()
		c.mu.Unlock()
		c.ensureReader() // flow and unblocking come from the broker
		select {
		case <-room:
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	if wantConfirm && !ch.confirming {
		c.mu.Unlock()
		return nil, ErrNotConfirmMode
	}
	// A field, not a local: a local would escape through the Method
	// interface and cost an allocation per publish.
	ch.pub = frames.BasicPublish{Exchange: exchange, RoutingKey: routingKey, Mandatory: msg.Mandatory, Immediate: msg.Immediate}
	seq, err := c.m.Publish(ch.id, &ch.pub, &msg.Properties, msg.Body)
	var cf *Confirmation
	alone := false
	if err != nil {
		err = ch.wrapErr(err)
	} else if seq != 0 {
		cf = &Confirmation{Seq: seq, conn: c, done: make(chan struct{})}
		ch.confirms.Push(seq, cf)
		// Nothing else awaits a confirm on this channel: most likely the
		// caller publishes one message at a time and waits for each, so
		// it writes the message itself instead of waking the writer.
		// Streams keep others outstanding and are coalesced by the writer.
		alone = ch.confirms.Len() == 1
	}
	c.mu.Unlock()
	if alone {
		c.flushDirect()
	} else {
		c.wakeWriter()
	}
	return cf, err
}

// onConfirmLocked resolves the handles an ack or nack settles and queues
// the user's confirm callbacks.
func (ch *Channel) onConfirmLocked(acts []action, tag uint64, multiple, ack bool) []action {
	ch.confirms.Resolve(tag, multiple, func(_ uint64, cf *Confirmation) {
		cf.resolve(ack, nil)
	})
	if len(ch.onConfirm) > 0 {
		fns := ch.onConfirm
		cf := Confirm{DeliveryTag: tag, Multiple: multiple, Ack: ack}
		acts = append(acts, action{kind: actNotify, fn: func() {
			for _, fn := range fns {
				fn(cf)
			}
		}})
	}
	return acts
}

// onReturnLocked copies a basic.return, ties it to its publish in confirm
// mode, and hands it to the return handlers (or logs it).
func (ch *Channel) onReturnLocked(acts []action, m *messageView) []action {
	r := Return{
		ReplyCode: m.ReplyCode, ReplyText: m.ReplyText, Exchange: m.Exchange, RoutingKey: m.RoutingKey,
		Body: append([]byte(nil), m.Body...), PublishSeq: m.PublishSeq,
	}
	r.Properties, _ = m.Properties.Properties()
	if m.PublishSeq != 0 {
		// The confirm that follows resolves the handle; mark it returned.
		ch.confirms.Peek(m.PublishSeq, func(cf *Confirmation) { cf.ret = &r })
	}
	if len(ch.onReturn) == 0 {
		ch.conn.log.Warn("amqp message returned and no return handler registered",
			"reply_code", int(r.ReplyCode), "reply_text", r.ReplyText, "exchange", r.Exchange, "routing_key", r.RoutingKey, "publish_seq", r.PublishSeq)
		return acts
	}
	fns := ch.onReturn
	return append(acts, action{kind: actNotify, fn: func() {
		for _, fn := range fns {
			fn(r)
		}
	}})
}

// NotifyReturn registers fn to receive every message the broker returns on
// this channel. fn runs on the connection's notifier goroutine, never
// blocking the reader.
func (ch *Channel) NotifyReturn(fn func(Return)) {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	ch.onReturn = append(ch.onReturn[:len(ch.onReturn):len(ch.onReturn)], fn)
}

// NotifyConfirm registers fn to receive every basic.ack and basic.nack on
// this channel, with its delivery tag and multiple flag (the seed's
// events['basic_ack']). fn runs on the connection's notifier goroutine.
func (ch *Channel) NotifyConfirm(fn func(Confirm)) {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	ch.onConfirm = append(ch.onConfirm[:len(ch.onConfirm):len(ch.onConfirm)], fn)
}

// Confirm puts the channel in confirm mode (confirm.select): the broker
// acks or nacks every later publish. The mode survives a reopening after a
// channel error.
func (ch *Channel) Confirm(ctx context.Context) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	c := ch.conn
	c.mu.Lock()
	if err := c.m.Call(ch.id, &frames.ConfirmSelect{}); err != nil {
		c.mu.Unlock()
		return err
	}
	ch.confirming = true
	w := newWaiter()
	ch.waiters = append(ch.waiters, w)
	c.mu.Unlock()
	c.flushDirect()
	_, err := w.wait(ctx, c)
	if err != nil {
		return fmt.Errorf("amqp: confirm.select: %w", err)
	}
	return nil
}

type messageView = statemachine.Message
