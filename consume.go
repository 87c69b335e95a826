package warren

import (
	"context"
	"errors"
	"fmt"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Delivery is a message delivered to a consumer or fetched with Get. It
// owns its memory.
type Delivery struct {
	ch          *Channel
	cons        *consumer // nil for Get
	incarnation uint64

	ConsumerTag  string
	DeliveryTag  uint64
	Redelivered  bool
	Exchange     string
	RoutingKey   string
	MessageCount uint32 // Get only: messages left in the queue
	Properties   proto.Properties
	Body         []byte
	// HeaderErr is set when the headers table could not be decoded; the
	// other properties and the body are still valid.
	HeaderErr error
}

// delivery copies an event's message into an owned Delivery (reader
// goroutine, under conn.mu).
func (ch *Channel) delivery(m *statemachine.Message) Delivery {
	c := ch.conn
	d := Delivery{
		ch: ch, incarnation: ch.incarnation,
		ConsumerTag: m.ConsumerTag, DeliveryTag: m.DeliveryTag, Redelivered: m.Redelivered,
		Exchange: m.Exchange, RoutingKey: m.RoutingKey, MessageCount: m.MessageCount,
		Body: c.copyBody(m.Body),
	}
	d.Properties, d.HeaderErr = m.Properties.PropertiesWith(c.intern)
	if d.HeaderErr != nil { // keep what decoded: everything but the headers
		hv := m.Properties
		hv.Headers, hv.Flags = nil, hv.Flags&^proto.FlagHeaders
		d.Properties, _ = hv.PropertiesWith(c.intern)
	}
	return d
}

// Bodies of up to slabMaxBody bytes are carved out of shared blocks of
// slabSize bytes: one allocation per block instead of one per message. A
// delivery's body keeps its block reachable, so a program that keeps a
// few small bodies for a long time holds up to slabSize each.
const (
	slabSize    = 64 << 10
	slabMaxBody = 8 << 10
)

// copyBody returns an owned copy of b (reader goroutine, under conn.mu).
func (c *Connection) copyBody(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > slabMaxBody {
		return append([]byte(nil), b...)
	}
	if cap(c.slab)-len(c.slab) < len(b) {
		c.slab = make([]byte, 0, slabSize)
	}
	start := len(c.slab)
	c.slab = append(c.slab, b...)
	return c.slab[start:len(c.slab):len(c.slab)] // full slice: appending to it cannot touch a neighbour
}

// Ack acknowledges the delivery (and with multiple, every earlier
// unacknowledged one on the channel). It fails with ErrStaleDelivery,
// sending nothing, when the channel was reopened since the delivery
// arrived.
func (d *Delivery) Ack(multiple bool) error {
	return d.settle(func(m *statemachine.Conn, id uint16) error { return m.Ack(id, d.DeliveryTag, multiple) })
}

// Nack rejects the delivery (basic.nack, a RabbitMQ extension), with
// multiple for every earlier unacknowledged one, requeueing it or not.
func (d *Delivery) Nack(multiple, requeue bool) error {
	return d.settle(func(m *statemachine.Conn, id uint16) error { return m.Nack(id, d.DeliveryTag, multiple, requeue) })
}

// Reject rejects the delivery (basic.reject), requeueing it or not.
func (d *Delivery) Reject(requeue bool) error {
	return d.settle(func(m *statemachine.Conn, id uint16) error { return m.Reject(id, d.DeliveryTag, requeue) })
}

func (d *Delivery) settle(send func(m *statemachine.Conn, id uint16) error) error {
	if d.ch == nil {
		return errors.New("amqp: delivery has no channel")
	}
	c := d.ch.conn
	c.mu.Lock()
	if d.ch.incarnation != d.incarnation || d.ch.lastErr != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w (delivery tag %d)", ErrStaleDelivery, d.DeliveryTag)
	}
	err := send(c.m, d.ch.id)
	c.mu.Unlock()
	switch {
	case c.inHandler.Load(): // a handler's acks are flushed together after the batch
	case d.cons == nil || len(d.cons.deliveries) == 0:
		// The consumer has caught up and is about to wait: write its acks
		// now rather than waking the writer for them.
		c.flushDirect()
	default:
		c.wakeWriter()
	}
	return err
}

// consumer is one basic.consume subscription.
type consumer struct {
	tag        string
	deliveries chan Delivery
	onCancel   func(tag string)
	handler    func(Delivery) // ConsumeOptions.Handler: called on the reader goroutine instead of sending
	ended      bool           // deliveries closed (reader goroutine only)
	err        error          // why it ended (guarded by conn.mu)
}

// ConsumeOptions are the options of basic.consume.
type ConsumeOptions struct {
	// ConsumerTag names the consumer; empty: Warren generates a unique one.
	ConsumerTag string
	// NoAck: the broker considers messages acknowledged on delivery.
	NoAck bool
	// Exclusive: no other consumer may use the queue.
	Exclusive bool
	// NoLocal asks not to receive messages published on this connection;
	// RabbitMQ ignores it.
	NoLocal bool
	// Arguments, e.g. x-priority.
	Arguments proto.Table
	// Handler, when set, receives each delivery on the connection's reader
	// goroutine instead of through Deliveries (which then only closes when
	// the consumer ends). It saves a goroutine hand-off per batch of
	// messages, which is most of a consumer's CPU when the broker sends a
	// few messages at a time; in exchange every delivery of the connection
	// waits while Handler runs, so it must be quick and must not wait for
	// anything this connection receives: Ack, Nack and Reject are fine; a
	// Publish or a request from it can only time out, since the reply (or a
	// connection.unblocked) would arrive on the goroutine it holds.
	Handler func(Delivery)
	// Prefetch, for a manual-ack consumer, sets basic.qos prefetch-count
	// on the channel before consuming, unless the channel already has a
	// QoS; zero means Config.ConsumerBuffer, so the consumer's buffer never
	// fills. A larger value is honoured: when the buffer fills, the reader
	// waits (TCP back-pressure) rather than grow memory. Ignored with NoAck.
	Prefetch int
	// OnCancel receives the consumer tag when the broker cancels the
	// consumer (e.g. its queue was deleted). Without it, the Consumer's
	// Err reports a *ChannelError naming the tag.
	OnCancel func(consumerTag string)
}

// Consumer is a running basic.consume.
type Consumer struct {
	ch   *Channel
	cons *consumer
	// Tag is the consumer tag.
	Tag string
}

// Deliveries returns the consumer's deliveries. The channel is bounded
// (Config.ConsumerBuffer): when it is full the connection's reader waits,
// which pushes back on the broker through TCP, instead of growing memory
// or dropping. It is closed when the consumer ends; Err says why.
func (cs *Consumer) Deliveries() <-chan Delivery { return cs.cons.deliveries }

// Err returns why the consumer ended: nil after Cancel, a *ChannelError
// naming the tag when the broker cancelled it without an OnCancel, or the
// channel's or connection's error.
func (cs *Consumer) Err() error {
	cs.ch.conn.mu.Lock()
	defer cs.ch.conn.mu.Unlock()
	return cs.cons.err
}

// Consume starts a consumer on queue (basic.consume). Deliveries arrive on
// the Consumer's bounded Go channel rather than through a callback: a
// channel composes with select and contexts, keeps the user's code off the
// connection's reader goroutine, and makes back-pressure explicit.
//
// The policy: each consumer's buffer holds Config.ConsumerBuffer
// deliveries; a manual-ack consumer gets a prefetch no larger than that by
// default, so its buffer never fills; when a buffer does fill (auto-ack,
// or a larger prefetch) the reader waits, which pushes back on the broker
// through TCP, instead of growing memory or dropping a message. A
// consumer that nobody drains therefore holds up the other consumers of
// the connection: give it its own connection, or use manual acks.
func (ch *Channel) Consume(ctx context.Context, queue string, opts ConsumeOptions) (*Consumer, error) {
	if err := ch.ready(ctx); err != nil {
		return nil, err
	}
	c := ch.conn
	if !opts.NoAck {
		c.mu.Lock()
		hasQos := ch.qos != nil
		c.mu.Unlock()
		if !hasQos {
			prefetch := opts.Prefetch
			if prefetch <= 0 {
				prefetch = c.cfg.ConsumerBuffer
			}
			if err := ch.Qos(ctx, QosOptions{PrefetchCount: prefetch}); err != nil {
				return nil, err
			}
		}
	}
	m := &frames.BasicConsume{Queue: queue, ConsumerTag: opts.ConsumerTag, NoLocal: opts.NoLocal, NoAck: opts.NoAck, Exclusive: opts.Exclusive, Arguments: opts.Arguments}
	cons := &consumer{deliveries: make(chan Delivery, c.cfg.ConsumerBuffer), onCancel: opts.OnCancel, handler: opts.Handler}
	if opts.Handler != nil {
		cons.deliveries = make(chan Delivery) // nothing is ever sent; it closes when the consumer ends
	}
	c.mu.Lock()
	if ch.lastErr != nil || ch.userClosed {
		c.mu.Unlock()
		return nil, ch.wrapErr(statemachine.ErrChannelNotOpen)
	}
	if err := c.m.Call(ch.id, m); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	cons.tag = m.ConsumerTag // generated when empty
	ch.consumers[cons.tag] = cons
	ch.lastCons = nil
	w := newWaiter()
	ch.waiters = append(ch.waiters, w)
	c.mu.Unlock()
	c.flushDirect()
	if _, err := w.wait(ctx, c); err != nil {
		return nil, err
	}
	c.topo.addConsumer(DeclaredConsumer{Queue: queue, Tag: cons.tag, Options: opts})
	return &Consumer{ch: ch, cons: cons, Tag: cons.tag}, nil
}

// Cancel stops the consumer (basic.cancel) and waits for cancel-ok.
// Deliveries already on their way still arrive before Deliveries closes,
// so keep receiving until it does.
func (cs *Consumer) Cancel(ctx context.Context) error {
	_, _, err := cs.ch.call(ctx, &frames.BasicCancel{ConsumerTag: cs.Tag})
	cs.ch.conn.topo.deleteConsumer(cs.Tag)
	return err
}

// onServerCancelLocked handles a broker-sent basic.cancel.
func (ch *Channel) onServerCancelLocked(acts []action, tag string) []action {
	cons := ch.consumers[tag]
	if cons == nil {
		return acts
	}
	ch.dropConsumerLocked(tag)
	ch.conn.topo.deleteConsumer(tag)
	if cons.onCancel != nil {
		fn := cons.onCancel
		acts = append(acts, action{kind: actNotify, fn: func() { fn(tag) }})
	} else {
		cons.err = &proto.ChannelError{Channel: ch.id, Origin: proto.ByPeer, ConsumerTag: tag,
			Reply: proto.Reply{Text: "consumer cancelled by the broker", ClassID: frames.ClassBasic, MethodID: frames.MethodBasicCancel.MethodID()}}
	}
	return append(acts, action{kind: actEndConsumer, cons: cons})
}

// NoAckConsumers returns the tags of the channel's consumers that consume
// without acknowledgements (py-amqp's no_ack_consumers).
func (ch *Channel) NoAckConsumers() []string {
	ch.conn.mu.Lock()
	defer ch.conn.mu.Unlock()
	if ch.lastErr != nil {
		return nil
	}
	return ch.conn.m.NoAckConsumers(ch.id)
}

// Get fetches one message from queue (basic.get); ok is false when the
// queue is empty.
func (ch *Channel) Get(ctx context.Context, queue string, noAck bool) (d Delivery, ok bool, err error) {
	reply, msg, err := ch.call(ctx, &frames.BasicGet{Queue: queue, NoAck: noAck})
	if err != nil {
		return Delivery{}, false, err
	}
	if reply.Key() == frames.MethodBasicGetEmpty || msg == nil {
		return Delivery{}, false, nil
	}
	return *msg, true, nil
}
