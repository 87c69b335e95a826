package warren

import (
	"context"
	"fmt"

	"github.com/warren-amqp/warren/internal/driver"
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
	// Seq is the publish's sequence number on its Channel: the delivery
	// tag of its confirm, plus the publishes of the channel's earlier
	// incarnations, so it never repeats on a Channel.
	Seq      uint64
	conn     *Connection
	exchange string // published to: a 404 naming it means not sent
	done     chan struct{}
	ack      bool
	ret      *Return
	err      error
	obs      *observedPublish // Config.Observer's, told of the outcome
}

func (cf *Confirmation) resolve(ack bool, err error) {
	cf.ack, cf.err = ack, err
	if cf.obs != nil {
		cf.obs.po.Confirmed(ack, err)
	}
	if cf.done != nil { // nil: made only for the observer (a bare Publish)
		close(cf.done)
	}
}

// Done is closed when the outcome is known.
func (cf *Confirmation) Done() <-chan struct{} {
	cf.conn.drv().Reclaim() // the caller may block on it: the socket must be read
	return cf.done
}

// Wait waits for the outcome: acked reports basic.ack (true) or basic.nack
// (false); err is non-nil when the channel or connection closed first
// (wrapping ErrMaybeSent) or ctx ended.
func (cf *Confirmation) Wait(ctx context.Context) (acked bool, err error) {
	if err := cf.conn.await(ctx, cf.done); err != nil {
		return false, err
	}
	return cf.ack, cf.err
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
// ConfirmSelect) and returns the handle that resolves with the broker's
// ack or nack. An error means nothing was sent.
func (ch *Channel) PublishWithConfirm(ctx context.Context, exchange, routingKey string, msg Publishing) (*Confirmation, error) {
	return ch.publish(ctx, exchange, routingKey, &msg, true)
}

func (ch *Channel) publish(ctx context.Context, exchange, routingKey string, msg *Publishing, wantConfirm bool) (*Confirmation, error) {
	c := ch.conn
	var op *observedPublish
	if obs := c.cfg.Observer; obs != nil {
		op = ch.observePublish(ctx, obs, exchange, routingKey, msg)
	}
	m, err := ch.lockToPublish(ctx)
	if err != nil {
		if op != nil { // (without the lock: lockToPublish released it)
			op.po.Published(PublishResult{Err: err})
		}
		return nil, err
	}
	if wantConfirm && !ch.confirming {
		ch.observePublishedLocked(op, 0, ErrNotConfirmMode)
		c.unlock(driver.FlushLater)
		return nil, ErrNotConfirmMode
	}
	var cf *Confirmation
	var ref any
	if wantConfirm {
		cf = &Confirmation{conn: c, exchange: exchange, done: make(chan struct{}), obs: op}
		ref = cf
	} else if op != nil && ch.confirming {
		// A handle for the observer alone, so that its outcome is told
		// like a PublishWithConfirm's.
		ref = &Confirmation{conn: c, exchange: exchange, obs: op}
	}
	// A field, not a local: a local would escape through the Method
	// interface and cost an allocation per publish.
	ch.pub = frames.BasicPublish{Exchange: exchange, RoutingKey: routingKey, Mandatory: msg.Mandatory, Immediate: msg.Immediate}
	seq, err := m.Publish(ch.id, &ch.pub, &msg.Properties, msg.Body, ref)
	flush := driver.FlushLater
	switch {
	case err != nil:
		err, cf = ch.wrapErr(err), nil
	case ch.tx:
		ch.txDirty = true
	}
	if err == nil && seq != 0 {
		ch.lastSeq = seq
		if cf != nil {
			cf.Seq = ch.seqOffset + seq
			// Nothing else awaits a confirm on this channel: most likely
			// the caller publishes one message at a time and waits for
			// each. Streams keep others outstanding and are coalesced.
			if m.Unconfirmed(ch.id) == 1 {
				flush = driver.FlushNow
			}
		}
	}
	ch.observePublishedLocked(op, seq, err)
	c.unlock(flush)
	if op != nil && (err != nil || seq == 0) { // no confirm follows: op's work is done
		op.po = nil
		ch.obsFree.Store(op)
	}
	return cf, err
}

// observePublishedLocked tells op how a publish went: seq is the core's
// sequence number (0 outside confirm mode), err why nothing was sent.
func (ch *Channel) observePublishedLocked(op *observedPublish, seq uint64, err error) {
	if op == nil {
		return
	}
	r := PublishResult{Channel: ch.id, Confirm: err == nil && seq != 0, Err: err}
	if r.Confirm {
		r.Seq = ch.seqOffset + seq
	}
	op.po.Published(r)
}

// lockToPublish takes the driver's lock once the channel may publish:
// open (reopened if need be), and with room in the write buffer, not
// paused by channel.flow nor blocked by the broker. It waits for that
// within ctx.
func (ch *Channel) lockToPublish(ctx context.Context) (*statemachine.Conn, error) {
	c := ch.conn
	for {
		m := c.lock()
		switch {
		case !ch.openLocked():
			c.unlock(driver.FlushLater)
			if err := ch.ready(ctx); err != nil {
				return nil, err
			}
			continue
		case m.State() != statemachine.StateOpen:
			err := c.closedErrLocked(m)
			c.unlock(driver.FlushLater)
			return nil, err
		}
		room := c.drv().RoomLocked(ch.id)
		if room == nil {
			return m, nil
		}
		c.unlock(driver.FlushLater)
		if err := c.await(ctx, room); err != nil {
			return nil, err
		}
	}
}

// onConfirmLocked resolves the handles a basic.ack or basic.nack settles
// and notifies the confirm listeners.
func (ch *Channel) onConfirmLocked(e *statemachine.Event) {
	for _, p := range e.Publishes {
		if cf, _ := p.Ref.(*Confirmation); cf != nil {
			cf.resolve(e.Ack, nil)
		}
	}
	if len(ch.confirmListeners) > 0 {
		n := ConfirmNotice{DeliveryTag: ch.seqOffset + e.DeliveryTag, Multiple: e.Multiple, Ack: e.Ack}
		for _, l := range ch.confirmListeners {
			l.post(n)
		}
	}
}

// onReturnLocked copies a basic.return, ties it to its publish in confirm
// mode, and hands it to the return listeners (or logs it).
func (ch *Channel) onReturnLocked(m *statemachine.Message) {
	r := Return{
		ReplyCode: m.ReplyCode, ReplyText: m.ReplyText, Exchange: m.Exchange, RoutingKey: m.RoutingKey,
		Body: append([]byte(nil), m.Body...),
	}
	if m.PublishSeq != 0 {
		r.PublishSeq = ch.seqOffset + m.PublishSeq
	}
	r.Properties, _ = m.Properties.Properties()
	var po PublishObserver
	if cf, _ := m.PublishRef.(*Confirmation); cf != nil {
		cf.ret = &r // the confirm that follows resolves the handle
		if cf.obs != nil {
			po = cf.obs.po
		}
	}
	if obs := ch.conn.cfg.Observer; obs != nil {
		obs.Returned(&r, po)
	}
	if len(ch.returnListeners) == 0 {
		ch.conn.log.Warn("amqp message returned and no return listener registered",
			"reply_code", int(r.ReplyCode), "reply_text", r.ReplyText, "exchange", r.Exchange, "routing_key", r.RoutingKey, "publish_seq", r.PublishSeq)
		return
	}
	for _, l := range ch.returnListeners {
		l.post(r)
	}
}

// ConfirmSelect puts the channel in confirm mode (confirm.select): the
// broker acks or nacks every later publish. The mode survives a reopening
// after a channel error.
func (ch *Channel) ConfirmSelect(ctx context.Context) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	c := ch.conn
	m := c.lock()
	tok, err := m.Call(ch.id, &frames.ConfirmSelect{})
	if err != nil {
		err = ch.wrapErr(err)
		c.unlock(driver.FlushLater)
		return err
	}
	ch.confirming = true // the broker numbers publishes from here on
	w, err := c.awaitReplyLocked(ctx, ch, tok)
	if err != nil {
		return err
	}
	if w.err != nil {
		return fmt.Errorf("amqp: confirm.select: %w", w.err)
	}
	return nil
}
