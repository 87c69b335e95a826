package warren

import (
	"context"
	"errors"
	"fmt"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Channel is an AMQP channel: the unit of ordering for requests,
// publishes and consumers. It is safe for concurrent use.
//
// After a channel error (for example a passive declare of a missing queue,
// 404), the requests pending at that moment fail with the *ChannelError,
// and the next call reopens the channel, as py-amqp does, re-applying the
// confirm mode and QoS set on it. Incarnation tells the incarnations apart;
// deliveries remember theirs.
type Channel struct {
	conn *Connection

	// Guarded by conn.mu.
	id          uint16
	incarnation uint64
	lastErr     error // why the current incarnation closed; nil while open
	userClosed  bool
	reopening   chan struct{} // closed when a reopening finishes
	waiters     []*waiter
	consumers   map[string]*consumer
	lastCons    *consumer // the consumer found for the last delivery
	flowActive  bool
	confirming  bool
	qos         *frames.BasicQos
	confirms    statemachine.Outstanding[*Confirmation]
	onConfirm   []func(Confirm)
	onReturn    []func(Return)
	onClose     []func(error)
	pub         frames.BasicPublish // scratch for publish (guarded by conn.mu)
}

// Confirm is one basic.ack or basic.nack from the broker (the seed's
// events['basic_ack'] / ['basic_nack']).
type Confirm struct {
	DeliveryTag uint64
	Multiple    bool
	Ack         bool
}

// Return is a message the broker returned (basic.return): mandatory and
// unroutable, or immediate and unconsumed.
type Return struct {
	ReplyCode  ReplyCode
	ReplyText  string
	Exchange   string
	RoutingKey string
	Properties proto.Properties
	Body       []byte
	// PublishSeq is the confirm sequence number of the returned publish
	// (confirm mode only; 0 otherwise).
	PublishSeq uint64
}

// Channel opens a new channel.
func (c *Connection) Channel(ctx context.Context) (*Channel, error) {
	ch := &Channel{conn: c, consumers: make(map[string]*consumer), flowActive: true}
	if err := ch.open(ctx); err != nil {
		return nil, err
	}
	return ch, nil
}

// open allocates an id, sends channel.open and re-applies the channel's
// modes; it waits for open-ok.
func (ch *Channel) open(ctx context.Context) error {
	c := ch.conn
	wait := make(chan error, 1)
	c.mu.Lock()
	id, err := c.m.OpenChannel()
	if err != nil {
		c.mu.Unlock()
		return err
	}
	ch.id = id
	ch.incarnation++
	ch.lastErr = nil
	ch.flowActive = true
	c.chans[id] = ch
	c.opening[id] = wait
	if ch.confirming {
		_ = c.m.Call(id, &frames.ConfirmSelect{})
		ch.waiters = append(ch.waiters, newWaiter()) // select-ok, nobody waits
	}
	if ch.qos != nil {
		q := *ch.qos
		_ = c.m.Call(id, &q)
		ch.waiters = append(ch.waiters, newWaiter())
	}
	c.mu.Unlock()
	c.flushDirect()
	c.ensureReader()
	select {
	case err := <-wait:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ready makes sure the channel is open, reopening it after a channel
// error. Concurrent callers share one reopening.
func (ch *Channel) ready(ctx context.Context) error {
	c := ch.conn
	for {
		c.mu.Lock()
		switch {
		case ch.userClosed:
			c.mu.Unlock()
			return ErrClosed
		case ch.reopening != nil:
			wait := ch.reopening
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		case ch.lastErr == nil:
			c.mu.Unlock()
			return nil
		}
		if c.m.State() != statemachine.StateOpen {
			err := c.closedErrLocked()
			c.mu.Unlock()
			return err
		}
		done := make(chan struct{})
		ch.reopening = done
		c.mu.Unlock()
		err := ch.open(ctx)
		c.mu.Lock()
		ch.reopening = nil
		close(done)
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("amqp: reopening channel: %w", err)
		}
		c.log.Debug("amqp channel reopened after an error", "channel", ch.ID(), "incarnation", ch.Incarnation())
		return nil
	}
}

// openLocked reports whether calls may go out on the current incarnation
// without (re)opening it first.
func (ch *Channel) openLocked() bool {
	return ch.lastErr == nil && ch.reopening == nil && !ch.userClosed
}

// ID returns the channel's current id (it may change when the channel is
// reopened after an error).
func (ch *Channel) ID() uint16 {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	return ch.id
}

// Incarnation counts how often the channel was opened: 1 at first, +1 for
// each reopening after a channel error.
func (ch *Channel) Incarnation() uint64 {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	return ch.incarnation
}

// call sends a synchronous (or asynchronous) method and, when it expects a
// reply, waits for it.
func (ch *Channel) call(ctx context.Context, m frames.Method) (frames.Method, *Delivery, error) {
	if err := ch.ready(ctx); err != nil {
		return nil, nil, err
	}
	c := ch.conn
	c.mu.Lock()
	if err := c.m.Call(ch.id, m); err != nil {
		c.mu.Unlock()
		return nil, nil, ch.wrapErr(err)
	}
	if !m.ExpectsReply() {
		c.mu.Unlock()
		c.wakeWriter()
		return nil, nil, nil
	}
	w := newWaiter()
	ch.waiters = append(ch.waiters, w)
	c.mu.Unlock()
	c.flushDirect()
	reply, err := w.wait(ctx, c)
	return reply, w.msg, err
}

func (ch *Channel) wrapErr(err error) error {
	if errors.Is(err, statemachine.ErrChannelNotOpen) && ch.lastErr != nil {
		return fmt.Errorf("%w: %w", err, ch.lastErr)
	}
	return err
}

// onReplyLocked keeps the channel's view of its consumers in step: after
// cancel-ok the consumer's deliveries close, behind any still queued.
func (ch *Channel) onReplyLocked(acts []action, m frames.Method) []action {
	if ok, isCancel := m.(*frames.BasicCancelOK); isCancel {
		if cons := ch.consumers[ok.ConsumerTag]; cons != nil {
			ch.dropConsumerLocked(ok.ConsumerTag)
			acts = append(acts, action{kind: actEndConsumer, cons: cons})
		}
	}
	return acts
}

// consumerLocked finds the consumer a delivery is for. Deliveries come in
// runs for one consumer, so the last one found is checked before the map.
func (ch *Channel) consumerLocked(tag string) *consumer {
	if cons := ch.lastCons; cons != nil && cons.tag == tag {
		return cons
	}
	cons := ch.consumers[tag]
	ch.lastCons = cons
	return cons
}

// dropConsumerLocked forgets a consumer.
func (ch *Channel) dropConsumerLocked(tag string) {
	delete(ch.consumers, tag)
	ch.lastCons = nil
}

// onClosedLocked handles the end of an incarnation: waiters fail,
// consumers end, unconfirmed publishes fail with ErrMaybeSent.
func (ch *Channel) onClosedLocked(acts []action, err error) []action {
	failWith := err
	if failWith == nil {
		failWith = ErrClosed
	}
	for _, w := range ch.waiters {
		w.resolve(nil, nil, failWith)
	}
	ch.waiters = nil
	ch.confirms.Drain(func(seq uint64, cf *Confirmation) {
		cf.resolve(false, fmt.Errorf("%w: %w", ErrMaybeSent, failWith))
	})
	// The next incarnation is a new AMQP channel whose confirms the broker
	// numbers from 1 again, as the machine does: restart the numbering.
	ch.confirms = statemachine.Outstanding[*Confirmation]{}
	// Closed alone (by Close or a channel error), the channel takes its
	// consumers with it for good: a reopened channel does not consume
	// again, so they leave the topology. When the whole connection closes
	// they stay, for a reconnecting client to consume again.
	channelOnly := ch.conn.m.State() == statemachine.StateOpen
	for tag, cons := range ch.consumers {
		cons.err = failWith
		acts = append(acts, action{kind: actEndConsumer, cons: cons})
		ch.dropConsumerLocked(tag)
		if channelOnly {
			ch.conn.topo.deleteConsumer(tag)
		}
	}
	if len(ch.onClose) > 0 {
		fns, reported := ch.onClose, err
		acts = append(acts, action{kind: actNotify, fn: func() {
			for _, fn := range fns {
				fn(reported)
			}
		}})
	}
	if err == nil {
		err = ErrClosed
	}
	ch.lastErr = err
	return acts
}

// Close closes the channel; later calls fail with ErrClosed.
func (ch *Channel) Close(ctx context.Context) error {
	c := ch.conn
	c.mu.Lock()
	if ch.userClosed {
		c.mu.Unlock()
		return nil
	}
	ch.userClosed = true
	if ch.lastErr != nil {
		c.mu.Unlock()
		return nil
	}
	w := newWaiter()
	if err := c.m.CloseChannel(ch.id, proto.Reply{Code: proto.ReplySuccess, Text: "closed by client"}); err != nil {
		c.mu.Unlock()
		return nil // the channel or the connection is already gone
	}
	ch.waiters = append(ch.waiters, w) // resolved when the channel closes
	c.mu.Unlock()
	c.flushDirect()
	_, err := w.wait(ctx, c)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Err returns why the channel's current incarnation closed (a
// *ChannelError from the broker, or the connection's error), or nil while
// it is open. After a channel error the next call reopens the channel and
// Err becomes nil again; use NotifyClose to see every error as it happens,
// for example when only publishing without confirms.
func (ch *Channel) Err() error {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	if ch.userClosed && errors.Is(ch.lastErr, ErrClosed) {
		return ErrClosed
	}
	return ch.lastErr
}

// NotifyClose registers fn to receive the error that closes each
// incarnation of the channel (nil for the user's own Close). fn runs on
// the connection's notifier goroutine and never blocks the reader.
func (ch *Channel) NotifyClose(fn func(err error)) {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	ch.onClose = append(ch.onClose[:len(ch.onClose):len(ch.onClose)], fn)
}
