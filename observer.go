package warren

import (
	"context"
	"fmt"

	"github.com/warren-amqp/warren/proto"
)

// Observer receives what a Connection does, for tracing and metrics
// (Config.Observer installs one; go.opentelemetry.io instrumentation is in
// the separate module github.com/warren-amqp/warren/otelwarren). With no
// Observer the hooks cost a nil check and nothing else: no allocation on
// any path.
//
// Where each hook runs, and what it may do:
//
//   - Publish runs on the publishing goroutine, before the connection's
//     lock is taken and before the message is encoded, so it may change
//     the message's properties (e.g. add trace-context headers).
//   - PublishObserver.Published, PublishObserver.Confirmed, Returned,
//     Recovery, Blocked and Connection's Closed event run with the
//     connection's lock held: Published on the publishing goroutine,
//     the others on the connection's reader goroutine (Recovery on the
//     recovery goroutine while it dials and restores).
//   - Delivery and DeliveryObserver.HandedOff run on the reader
//     goroutine, without the lock, around the hand-off of each delivery to
//     its consumer.
//   - Settled runs on the goroutine that acknowledged, after the lock is
//     released; Connection's Opened event on the goroutine that dialled
//     (the caller of Dial, or the recovery goroutine).
//
// Every hook must be quick (the reader's hooks hold up every delivery and
// confirm of the connection; those under the lock, every publish too) and
// must never call back into the Connection, its Channels or Consumers: one
// that waits for the connection deadlocks it. Record, count, start or end
// a span, and return. An Observer is shared by every goroutine of the
// connection, so it must be safe for concurrent use.
//
// Embed NopObserver in an implementation to inherit no-op methods for the
// hooks it does not need (and for any added later).
type Observer interface {
	// Publish is called for each Publish and PublishWithConfirm with the
	// caller's context and the message about to be encoded. Changes the
	// hook makes to p.Properties are published: to add headers, set
	// p.Properties.Headers to a new table (the caller's table, which
	// p.Properties.Headers shares, must not be modified in place). p is
	// valid only during the call. The returned PublishObserver (nil: none)
	// learns how the publish went.
	Publish(ctx context.Context, p *PublishInfo) PublishObserver
	// Returned is called for each basic.return. pub is the
	// PublishObserver of the returned publish when the channel is in
	// confirm mode (which ties a return to its publish), nil otherwise.
	// r is valid only during the call.
	Returned(r *Return, pub PublishObserver)
	// Delivery is called for each delivery to a consumer, just before it
	// is handed to the application (sent on Deliveries, or passed to
	// ConsumeOptions.Handler). d is valid only during the call and must
	// not be modified. The returned DeliveryObserver (nil: none) learns
	// when the hand-off is over.
	Delivery(d *Delivery, info DeliveryInfo) DeliveryObserver
	// Settled is called after the application acked, nacked or rejected
	// (Delivery.Ack, Nack, Reject, or the Channel's methods).
	Settled(s SettleInfo)
	// Connection is called when a connection opens (the first handshake
	// and every recovery's) and when the connection ends for good.
	Connection(e ConnectionEvent)
	// Recovery is called with every recovery event, in order, as
	// Connection.NotifyRecovery listeners receive them.
	Recovery(e RecoveryEvent)
	// Blocked is called when the broker blocks or unblocks the connection
	// (and with an unblocked state when a blocked connection is lost).
	Blocked(b Blocking)
}

// PublishObserver follows one publish (see Observer.Publish).
type PublishObserver interface {
	// Published is called once the publish was queued for the socket, or
	// failed (r.Err, then nothing was sent), on the publishing goroutine,
	// under the connection's lock (without it when the publish failed
	// before taking it: a context that ended, a closed connection):
	// always before Confirmed.
	Published(r PublishResult)
	// Confirmed is called once for a publish made in confirm mode: ack
	// reports the broker's basic.ack (true) or basic.nack (false); err is
	// non-nil when the channel or connection closed first (wrapping
	// ErrMaybeSent or ErrNotSent, as Confirmation.Wait reports). It runs
	// under the connection's lock, on the reader goroutine (or the
	// goroutine that closed the channel). The time between Publish and
	// Confirmed is the publish-to-confirm duration.
	Confirmed(ack bool, err error)
}

// DeliveryObserver follows one delivery (see Observer.Delivery).
type DeliveryObserver interface {
	// HandedOff is called on the reader goroutine once the delivery is
	// the application's: in its consumer's Deliveries buffer (after
	// waiting for room, if it was full), or when ConsumeOptions.Handler
	// has returned. It is also called when the delivery is dropped
	// because the connection is dying.
	HandedOff()
}

// PublishInfo describes a message about to be published (see
// Observer.Publish).
type PublishInfo struct {
	Exchange   string
	RoutingKey string
	Mandatory  bool
	Immediate  bool
	// Properties are the message's properties; changes to them are
	// published (see Observer.Publish).
	Properties proto.Properties
	// BodySize is the length of the body in bytes.
	BodySize int
}

// PublishResult is how a publish went when it left Publish (see
// PublishObserver.Published).
type PublishResult struct {
	// Channel is the channel number the publish went out on.
	Channel uint16
	// Confirm reports that the channel is in confirm mode:
	// PublishObserver.Confirmed follows.
	Confirm bool
	// Seq is the publish's confirm sequence number (Confirmation.Seq),
	// or 0 outside confirm mode.
	Seq uint64
	// Err is why nothing was sent, or nil.
	Err error
}

// DeliveryInfo is what Observer.Delivery learns besides the Delivery.
type DeliveryInfo struct {
	// Channel is the channel number the delivery arrived on.
	Channel uint16
	// Queue is the queue the consumer consumes (its current name, after
	// a recovery renamed a server-named queue).
	Queue string
}

// SettleKind says how the application settled deliveries.
type SettleKind uint8

// The kinds of SettleInfo.
const (
	SettleAck    SettleKind = iota + 1 // basic.ack
	SettleNack                         // basic.nack
	SettleReject                       // basic.reject
)

func (k SettleKind) String() string {
	switch k {
	case SettleAck:
		return "ack"
	case SettleNack:
		return "nack"
	case SettleReject:
		return "reject"
	}
	return fmt.Sprintf("SettleKind(%d)", uint8(k))
}

// SettleInfo is one acknowledgement by the application (see
// Observer.Settled).
type SettleInfo struct {
	Kind SettleKind
	// Channel is the channel number, DeliveryTag the tag as the
	// application sees it (Delivery.DeliveryTag).
	Channel     uint16
	DeliveryTag uint64
	Multiple    bool
	Requeue     bool
	// ConsumerTag is the consumer of the delivery, when settled through
	// a Delivery (empty through Channel.Ack, Nack and Reject).
	ConsumerTag string
	// Err is why nothing was sent (e.g. ErrStaleDelivery), or nil.
	Err error
}

// ConnectionEventKind says what a ConnectionEvent reports.
type ConnectionEventKind uint8

// The kinds of ConnectionEvent.
const (
	// ConnectionOpened: a handshake succeeded (the first, or a
	// recovery's); Address is the broker's.
	ConnectionOpened ConnectionEventKind = iota + 1
	// ConnectionClosed: the connection ended for good; Err says why (nil
	// after a clean Close), as Connection.Err.
	ConnectionClosed
)

func (k ConnectionEventKind) String() string {
	switch k {
	case ConnectionOpened:
		return "opened"
	case ConnectionClosed:
		return "closed"
	}
	return fmt.Sprintf("ConnectionEventKind(%d)", uint8(k))
}

// ConnectionEvent is a connection opening or ending (see
// Observer.Connection).
type ConnectionEvent struct {
	Kind ConnectionEventKind
	// Address is the broker's network address, host:port (Opened).
	Address string
	// Err is why the connection ended (Closed; nil after Close).
	Err error
}

// NopObserver is an Observer whose hooks do nothing. Embed it in an
// Observer to implement only the hooks needed.
type NopObserver struct{}

var _ Observer = NopObserver{}

// Publish returns nil.
func (NopObserver) Publish(context.Context, *PublishInfo) PublishObserver { return nil }

// Returned does nothing.
func (NopObserver) Returned(*Return, PublishObserver) {}

// Delivery returns nil.
func (NopObserver) Delivery(*Delivery, DeliveryInfo) DeliveryObserver { return nil }

// Settled does nothing.
func (NopObserver) Settled(SettleInfo) {}

// Connection does nothing.
func (NopObserver) Connection(ConnectionEvent) {}

// Recovery does nothing.
func (NopObserver) Recovery(RecoveryEvent) {}

// Blocked does nothing.
func (NopObserver) Blocked(Blocking) {}

// observedPublish is a publish that Config.Observer follows: the
// PublishInfo its Publish hook saw and the PublishObserver it returned,
// which a confirm-mode publish's Confirmation keeps (through a pointer, so
// that the handle stays in its size class). One that no confirm holds goes
// back to its Channel for the next publish (Channel.obsFree), so that an
// observer costs no allocation per publish outside confirm mode.
type observedPublish struct {
	info PublishInfo
	po   PublishObserver
}

// observePublish runs the Publish hook on msg (a copy of the caller's
// Publishing, owned by publish) and keeps the property changes it made.
// It returns nil when the hook returned no PublishObserver. Kept out of
// publish so that msg does not escape there when no observer is set.
func (ch *Channel) observePublish(ctx context.Context, obs Observer, exchange, routingKey string, msg *Publishing) *observedPublish {
	op := ch.obsFree.Swap(nil) // (concurrent publishers: one takes it, the others allocate)
	if op == nil {
		op = new(observedPublish)
	}
	op.info = PublishInfo{Exchange: exchange, RoutingKey: routingKey, Mandatory: msg.Mandatory,
		Immediate: msg.Immediate, Properties: msg.Properties, BodySize: len(msg.Body)}
	op.po = obs.Publish(ctx, &op.info)
	msg.Properties = op.info.Properties
	op.info = PublishInfo{} // let go of the message's memory
	if op.po == nil {
		ch.obsFree.Store(op)
		return nil
	}
	return op
}

// observeDelivery runs the Delivery hook for an action's delivery.
func (c *Connection) observeDelivery(a *action) DeliveryObserver {
	return c.cfg.Observer.Delivery(&a.d, DeliveryInfo{Channel: a.channel, Queue: a.cons.queue})
}

// observeSettle runs the Settled hook for an acknowledgement of the
// application's (cons: the delivery's consumer, nil if unknown).
func observeSettle(obs Observer, op settleOp, channel uint16, tag uint64, multiple, requeue bool, cons *consumer, err error) {
	s := SettleInfo{Kind: SettleAck, Channel: channel, DeliveryTag: tag, Multiple: multiple, Requeue: requeue, Err: err}
	switch op {
	case settleNack:
		s.Kind = SettleNack
	case settleReject:
		s.Kind = SettleReject
	}
	if cons != nil {
		s.ConsumerTag = cons.tag
	}
	obs.Settled(s)
}
