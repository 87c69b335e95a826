package warren

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Delivery is a message delivered to a consumer or fetched with Get. It
// owns its memory.
type Delivery struct {
	ch   *Channel
	cons *consumer // nil for Get

	ConsumerTag string
	// DeliveryTag identifies the delivery on its Channel for Ack, Nack
	// and Reject: the broker's tag plus the tags of the channel's earlier
	// incarnations, so it never repeats on a Channel.
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

// delivery copies an event's message into an owned Delivery, numbering
// it past the channel's earlier incarnations (under the driver's lock, by
// the socket's reader).
func (ch *Channel) delivery(m *statemachine.Message) Delivery {
	c := ch.conn
	if m.DeliveryTag > ch.maxTag {
		ch.maxTag = m.DeliveryTag
	}
	d := Delivery{
		ch:          ch,
		ConsumerTag: m.ConsumerTag, DeliveryTag: ch.tagOffset + m.DeliveryTag, Redelivered: m.Redelivered,
		Exchange: m.Exchange, RoutingKey: m.RoutingKey, MessageCount: m.MessageCount,
		Body: m.Body,
	}
	if !m.BodyOwned { // else the core has let go of it
		d.Body = c.copyBody(m.Body)
	}
	if c.intern == nil { // the reader goroutine's, bound once
		c.intern = new(frames.Interner).String
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
// sending nothing, when the delivery's channel incarnation has closed
// since it arrived: the broker will deliver the message again.
func (d *Delivery) Ack(multiple bool) error {
	return d.settle(settleAck, multiple, false)
}

// Nack rejects the delivery (basic.nack, a RabbitMQ extension), with
// multiple for every earlier unacknowledged one, requeueing it or not.
// It fails with ErrStaleDelivery like Ack.
func (d *Delivery) Nack(multiple, requeue bool) error {
	return d.settle(settleNack, multiple, requeue)
}

// Reject rejects the delivery (basic.reject), requeueing it or not. It
// fails with ErrStaleDelivery like Ack.
func (d *Delivery) Reject(requeue bool) error {
	return d.settle(settleReject, false, requeue)
}

func (d *Delivery) settle(op settleOp, multiple, requeue bool) error {
	if d.ch == nil {
		return errors.New("amqp: delivery has no channel")
	}
	return d.ch.settle(op, d.DeliveryTag, multiple, requeue, d.cons)
}

// settleOp says how a delivery is settled.
type settleOp uint8

const (
	settleAck settleOp = iota
	settleNack
	settleReject
)

// settle sends basic.ack, nack or reject for a delivery tag as the
// application sees it (with the incarnation offset), for a delivery of
// cons (nil if unknown).
func (ch *Channel) settle(op settleOp, tag uint64, multiple, requeue bool, cons *consumer) error {
	c := ch.conn
	m := c.lock()
	all := tag == 0 && multiple // everything unacknowledged on the channel
	if !ch.liveLocked() || (tag <= ch.tagOffset && !all) {
		id := ch.id
		c.unlock(driver.FlushLater)
		err := fmt.Errorf("%w (delivery tag %d)", ErrStaleDelivery, tag)
		if obs := c.cfg.Observer; obs != nil {
			observeSettle(obs, op, id, tag, multiple, requeue, cons, err)
		}
		return err
	}
	wire := tag
	if !all {
		wire -= ch.tagOffset
	}
	if ch.tx {
		ch.txDirty = true
	}
	var err error
	switch op {
	case settleAck:
		err = m.Ack(ch.id, wire, multiple)
	case settleNack:
		err = m.Nack(ch.id, wire, multiple, requeue)
	default:
		err = m.Reject(ch.id, wire, requeue)
	}
	flush := driver.FlushLater
	switch {
	case c.inHandler.Load():
		flush = driver.FlushBatch // a handler's acks go out together after its batch
	case cons == nil || len(cons.deliveries) == 0:
		// The consumer has caught up and is about to wait: its acks can
		// go out now, from here.
		flush = driver.FlushNow
	}
	id := ch.id
	c.unlock(flush)
	if obs := c.cfg.Observer; obs != nil {
		observeSettle(obs, op, id, tag, multiple, requeue, cons, err)
	}
	return err
}

// consumer is one basic.consume subscription.
type consumer struct {
	tag        string
	queue      string         // the queue consumed (renamed by a recovery if server-named)
	opts       ConsumeOptions // as given to Consume, replayed by a recovery
	seq        uint32         // the order consumers started on their channel
	deliveries chan Delivery
	onCancel   *listener[string] // ConsumeOptions.OnCancel
	handler    func(Delivery)    // ConsumeOptions.Handler: called on the reader goroutine instead of sending
	ended      bool              // deliveries closed (reader goroutine only; see endDetachedLocked)
	err        error             // why it ended (guarded by the driver's lock)

	// Cancel closes cancelling (under the driver's lock, once: cancelled
	// says so). From then on the reader does not wait for room in a full
	// Deliveries buffer: it keeps what arrives in overflow (reader
	// goroutine only), in order, so that it can read the cancel-ok that
	// the goroutine calling Cancel (perhaps the one that drains
	// Deliveries) waits for. Overflow is bounded by what the broker sent
	// before cancel-ok: at most the prefetch for a manual-ack consumer.
	cancelling chan struct{}
	cancelled  bool
	overflow   []Delivery
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

// iteratorCancelTimeout bounds the Cancel that a Messages iterator makes
// when its context ends.
const iteratorCancelTimeout = 10 * time.Second

// Messages returns an iterator over the consumer's deliveries, for
//
//	for d, err := range cons.Messages(ctx) {
//		if err != nil {
//			return err // ctx ended, or the consumer failed
//		}
//		// use d, then d.Ack(false) for a manual-ack consumer
//	}
//
// It yields each delivery with a nil error, in order. It ends:
//
//   - when ctx ends: the consumer is cancelled (basic.cancel, bounded by
//     10 s) and the iterator yields ctx's error once. Deliveries received
//     but not yet yielded stay unacknowledged until the channel closes,
//     when the broker requeues them; Deliveries still hands them out.
//   - when the consumer ends with an error (the broker cancelled it, the
//     channel or connection closed): it yields that error (Err) once.
//   - when the consumer was cancelled with Cancel: after the deliveries
//     kept by the cancel, without an error.
//
// Breaking out of the loop leaves the consumer running: range over
// Messages again, or Cancel it. Only one goroutine should range over a
// consumer's messages at a time (they share one Deliveries channel).
func (cs *Consumer) Messages(ctx context.Context) iter.Seq2[Delivery, error] {
	return func(yield func(Delivery, error) bool) {
		for {
			if ctx.Err() != nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), iteratorCancelTimeout)
				err := cs.Cancel(cctx)
				cancel()
				if err != nil && !errors.Is(err, ErrClosed) {
					yield(Delivery{}, fmt.Errorf("%w (and cancelling the consumer: %w)", ctx.Err(), err))
					return
				}
				yield(Delivery{}, ctx.Err())
				return
			}
			select {
			case d, ok := <-cs.cons.deliveries:
				if !ok {
					if err := cs.Err(); err != nil {
						yield(Delivery{}, err)
					}
					return
				}
				if !yield(d, nil) {
					return
				}
			case <-ctx.Done():
			}
		}
	}
}

// Err returns why the consumer ended: nil after Cancel, a *ChannelError
// naming the tag when the broker cancelled it without an OnCancel, or the
// channel's or connection's error.
func (cs *Consumer) Err() error {
	cs.ch.conn.lock()
	defer cs.ch.conn.unlock(driver.FlushLater)
	return cs.cons.err
}

// Consume starts a consumer on queue (basic.consume). ctx bounds only the
// request (and the basic.qos before it): once Consume returns, the
// consumer runs until Cancel, a cancel from the broker, or the end of its
// channel or connection, whatever becomes of ctx. To tie a consumer to a
// context, range over Consumer.Messages(ctx): its context's end cancels
// the consumer. Deliveries arrive on
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
		c.lock()
		hasQos := ch.qos[0] != nil || ch.qos[1] != nil
		c.unlock(driver.FlushLater)
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
	method := &frames.BasicConsume{Queue: queue, ConsumerTag: opts.ConsumerTag, NoLocal: opts.NoLocal, NoAck: opts.NoAck, Exclusive: opts.Exclusive, Arguments: opts.Arguments}
	cons := &consumer{queue: queue, opts: opts, deliveries: make(chan Delivery, c.cfg.ConsumerBuffer), handler: opts.Handler,
		cancelling: make(chan struct{})}
	if opts.Handler != nil {
		cons.deliveries = make(chan Delivery) // nothing is ever sent; it closes when the consumer ends
	}
	if opts.OnCancel != nil {
		cons.onCancel = newFuncListener(opts.OnCancel, c.log, "consumer cancel")
	}
	m := c.lock()
	if !ch.openLocked() {
		err := ch.wrapErr(statemachine.ErrChannelNotOpen)
		c.unlock(driver.FlushLater)
		return nil, err
	}
	tok, err := m.Call(ch.id, method)
	if err != nil {
		c.unlock(driver.FlushLater)
		return nil, err
	}
	cons.tag = method.ConsumerTag // generated when empty
	cons.opts.ConsumerTag = cons.tag
	ch.consSeq++
	cons.seq = ch.consSeq
	ch.addConsumerLocked(cons)
	w, err := c.awaitReplyLocked(ctx, ch, tok)
	if err != nil {
		// Nobody will hold this consumer: cancel it. Its deliveries, if
		// consume-ok comes after all, go back to the queue unacked.
		m := c.lock()
		if ch.consumers[cons.tag] == cons {
			_, _ = m.Call(ch.id, &frames.BasicCancel{ConsumerTag: cons.tag})
		}
		c.unlock(driver.FlushLater)
		return nil, err
	}
	if w.err != nil {
		return nil, w.err
	}
	c.topo.addConsumer(DeclaredConsumer{Queue: queue, Tag: cons.tag, Options: opts})
	return &Consumer{ch: ch, cons: cons, Tag: cons.tag}, nil
}

// Cancel stops the consumer (basic.cancel) and waits for cancel-ok.
// Deliveries already on their way still arrive before Deliveries closes,
// so keep receiving until it does. Cancel never waits for the application
// to receive: it may be called from the goroutine that ranges over
// Deliveries, whatever the prefetch, and deliveries that arrive while it
// waits are kept, in order, behind those in the buffer (at most what the
// broker sent before cancel-ok, so at most the prefetch for a manual-ack
// consumer), never dropped.
func (cs *Consumer) Cancel(ctx context.Context) error {
	c := cs.ch.conn
	c.lock()
	if cons := cs.cons; !cons.cancelled {
		cons.cancelled = true
		close(cons.cancelling)
	}
	c.unlock(driver.FlushLater)
	_, _, err := cs.ch.call(ctx, &frames.BasicCancel{ConsumerTag: cs.Tag})
	cs.ch.conn.topo.deleteConsumer(cs.Tag)
	return err
}

// onCancelOKLocked ends a consumer whose cancel the broker confirmed:
// its deliveries close behind any still queued.
func (ch *Channel) onCancelOKLocked(tag string) {
	if cons := ch.consumers[tag]; cons != nil {
		ch.dropConsumerLocked(tag)
		ch.conn.acts = append(ch.conn.acts, action{kind: actEndConsumer, cons: cons})
	}
}

// onServerCancelLocked handles a broker-sent basic.cancel.
func (ch *Channel) onServerCancelLocked(tag string) {
	cons := ch.consumers[tag]
	if cons == nil {
		return
	}
	ch.dropConsumerLocked(tag)
	ch.conn.topo.deleteConsumer(tag)
	if cons.onCancel != nil {
		cons.onCancel.post(tag)
		cons.onCancel.close()
	} else {
		cons.err = &proto.ChannelError{Channel: ch.id, Origin: proto.ByPeer, ConsumerTag: tag,
			Reply: proto.Reply{Text: "consumer cancelled by the broker", ClassID: frames.ClassBasic, MethodID: frames.MethodBasicCancel.MethodID()}}
	}
	ch.conn.acts = append(ch.conn.acts, action{kind: actEndConsumer, cons: cons})
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

// addConsumerLocked registers a consumer for its deliveries.
func (ch *Channel) addConsumerLocked(cons *consumer) {
	if ch.consumers == nil {
		ch.consumers = make(map[string]*consumer)
	}
	ch.consumers[cons.tag] = cons
	ch.lastCons = nil
}

// endDetachedLocked ends a consumer that no incarnation of its channel
// holds (one a recovery kept and did not, or will not, restore): no
// delivery can be queued for it, so its Deliveries channel may be closed
// here rather than by the reader goroutine.
func (cons *consumer) endDetachedLocked(err error) {
	if cons.ended {
		return
	}
	cons.ended = true
	cons.err = err
	close(cons.deliveries)
}

// dropConsumerLocked forgets a consumer.
func (ch *Channel) dropConsumerLocked(tag string) {
	delete(ch.consumers, tag)
	ch.lastCons = nil
}

// NoAckConsumers returns the tags of the channel's consumers that consume
// without acknowledgements (py-amqp's no_ack_consumers).
func (ch *Channel) NoAckConsumers() []string {
	m := ch.conn.lock()
	defer ch.conn.unlock(driver.FlushLater)
	if ch.lastErr != nil {
		return nil
	}
	return m.NoAckConsumers(ch.id)
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
