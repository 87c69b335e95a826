package warren

import (
	"context"
	"fmt"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// QosOptions are the options of basic.qos.
type QosOptions struct {
	// PrefetchCount limits unacknowledged deliveries (0: no limit).
	PrefetchCount int
	// PrefetchSize limits unacknowledged bytes; RabbitMQ refuses any
	// non-zero value by closing the connection with 540.
	PrefetchSize int
	// Global applies the limit to the whole channel rather than to each
	// new consumer (RabbitMQ's reading).
	Global bool
}

// Qos sets the prefetch limits (basic.qos). They survive a reopening after
// a channel error; a per-consumer and a global limit are kept apart, as
// RabbitMQ applies both.
func (ch *Channel) Qos(ctx context.Context, opts QosOptions) error {
	m := frames.BasicQos{PrefetchCount: uint16(opts.PrefetchCount), PrefetchSize: uint32(opts.PrefetchSize), Global: opts.Global}
	if _, _, err := ch.call(ctx, &m); err != nil {
		return err
	}
	i := 0
	if m.Global {
		i = 1
	}
	ch.conn.lock()
	ch.qos[i] = &m
	ch.conn.unlock(driver.FlushLater)
	return nil
}

// ExchangeOptions are the options of exchange.declare.
type ExchangeOptions struct {
	Passive    bool // only check that the exchange exists (404 channel error if not)
	Durable    bool // survive a broker restart
	AutoDelete bool // delete when the last binding goes
	Internal   bool // publishers cannot publish to it directly
	NoWait     bool // do not wait for declare-ok
	Arguments  proto.Table
}

// ExchangeDeclare declares an exchange of kind ("direct", "fanout",
// "topic", "headers", …).
func (ch *Channel) ExchangeDeclare(ctx context.Context, name, kind string, opts ExchangeOptions) error {
	_, _, err := ch.call(ctx, &frames.ExchangeDeclare{Exchange: name, Type: kind, Passive: opts.Passive, Durable: opts.Durable,
		AutoDelete: opts.AutoDelete, Internal: opts.Internal, NoWait: opts.NoWait, Arguments: opts.Arguments})
	if err == nil {
		ch.conn.topo.addExchange(DeclaredExchange{Name: name, Kind: kind, Options: opts})
	}
	return err
}

// ExchangeDeleteOptions are the options of exchange.delete.
type ExchangeDeleteOptions struct {
	IfUnused bool // only when it has no bindings (406 otherwise)
	NoWait   bool
}

// ExchangeDelete deletes an exchange.
func (ch *Channel) ExchangeDelete(ctx context.Context, name string, opts ExchangeDeleteOptions) error {
	_, _, err := ch.call(ctx, &frames.ExchangeDelete{Exchange: name, IfUnused: opts.IfUnused, NoWait: opts.NoWait})
	if err == nil {
		ch.conn.topo.deleteExchange(name)
	}
	return err
}

// BindOptions are the options of the bind and unbind methods.
type BindOptions struct {
	NoWait    bool
	Arguments proto.Table
}

// ExchangeBind binds destination to source (exchange-to-exchange
// bindings, a RabbitMQ extension): messages routed by source with
// routingKey flow on to destination.
func (ch *Channel) ExchangeBind(ctx context.Context, destination, routingKey, source string, opts BindOptions) error {
	_, _, err := ch.call(ctx, &frames.ExchangeBind{Destination: destination, Source: source, RoutingKey: routingKey, NoWait: opts.NoWait, Arguments: opts.Arguments})
	if err == nil {
		ch.conn.topo.addBinding(DeclaredBinding{ExchangeToExchange: true, Destination: destination, Source: source, RoutingKey: routingKey, Arguments: opts.Arguments})
	}
	return err
}

// ExchangeUnbind removes an exchange-to-exchange binding.
func (ch *Channel) ExchangeUnbind(ctx context.Context, destination, routingKey, source string, opts BindOptions) error {
	_, _, err := ch.call(ctx, &frames.ExchangeUnbind{Destination: destination, Source: source, RoutingKey: routingKey, NoWait: opts.NoWait, Arguments: opts.Arguments})
	if err == nil {
		ch.conn.topo.deleteBinding(DeclaredBinding{ExchangeToExchange: true, Destination: destination, Source: source, RoutingKey: routingKey})
	}
	return err
}

// QueueOptions are the options of queue.declare.
type QueueOptions struct {
	Passive    bool // only check that the queue exists (404 channel error if not)
	Durable    bool
	Exclusive  bool // only this connection may use it; deleted when it closes
	AutoDelete bool // deleted when its last consumer goes
	NoWait     bool
	Arguments  proto.Table // e.g. x-max-length, x-queue-type
}

// Queue is the broker's answer to queue.declare.
type Queue struct {
	Name      string // the server-chosen name when declared with ""
	Messages  int
	Consumers int
}

// QueueDeclare declares a queue; an empty name asks the broker to choose
// one, returned in Queue.Name.
func (ch *Channel) QueueDeclare(ctx context.Context, name string, opts QueueOptions) (Queue, error) {
	reply, _, err := ch.call(ctx, &frames.QueueDeclare{Queue: name, Passive: opts.Passive, Durable: opts.Durable, Exclusive: opts.Exclusive,
		AutoDelete: opts.AutoDelete, NoWait: opts.NoWait, Arguments: opts.Arguments})
	if err != nil {
		return Queue{}, err
	}
	q := Queue{Name: name}
	if ok, _ := reply.(*frames.QueueDeclareOK); ok != nil {
		q = Queue{Name: ok.Queue, Messages: int(ok.MessageCount), Consumers: int(ok.ConsumerCount)}
	}
	ch.conn.topo.addQueue(DeclaredQueue{Name: q.Name, ServerNamed: name == "", Options: opts})
	return q, nil
}

// QueueBind binds queue to exchange with routingKey; the empty exchange
// name is the default exchange (to which RabbitMQ refuses bindings: 403).
func (ch *Channel) QueueBind(ctx context.Context, queue, routingKey, exchange string, opts BindOptions) error {
	_, _, err := ch.call(ctx, &frames.QueueBind{Queue: queue, Exchange: exchange, RoutingKey: routingKey, NoWait: opts.NoWait, Arguments: opts.Arguments})
	if err == nil {
		ch.conn.topo.addBinding(DeclaredBinding{Destination: queue, Source: exchange, RoutingKey: routingKey, Arguments: opts.Arguments})
	}
	return err
}

// UnbindOptions are the options of queue.unbind (which has no no-wait
// form).
type UnbindOptions struct {
	// Arguments must match those of the binding to remove.
	Arguments proto.Table
}

// QueueUnbind removes a queue binding.
func (ch *Channel) QueueUnbind(ctx context.Context, queue, routingKey, exchange string, opts UnbindOptions) error {
	_, _, err := ch.call(ctx, &frames.QueueUnbind{Queue: queue, Exchange: exchange, RoutingKey: routingKey, Arguments: opts.Arguments})
	if err == nil {
		ch.conn.topo.deleteBinding(DeclaredBinding{Destination: queue, Source: exchange, RoutingKey: routingKey})
	}
	return err
}

// QueuePurge removes every ready message from queue and returns how many.
func (ch *Channel) QueuePurge(ctx context.Context, queue string) (int, error) {
	reply, _, err := ch.call(ctx, &frames.QueuePurge{Queue: queue})
	if err != nil {
		return 0, err
	}
	return int(reply.(*frames.QueuePurgeOK).MessageCount), nil
}

// QueueDeleteOptions are the options of queue.delete.
type QueueDeleteOptions struct {
	IfUnused bool // only without consumers
	IfEmpty  bool // only without messages
	NoWait   bool
}

// QueueDelete deletes queue and returns how many messages it held.
func (ch *Channel) QueueDelete(ctx context.Context, queue string, opts QueueDeleteOptions) (int, error) {
	reply, _, err := ch.call(ctx, &frames.QueueDelete{Queue: queue, IfUnused: opts.IfUnused, IfEmpty: opts.IfEmpty, NoWait: opts.NoWait})
	if err == nil {
		ch.conn.topo.deleteQueue(queue)
	}
	if err != nil || reply == nil {
		return 0, err
	}
	return int(reply.(*frames.QueueDeleteOK).MessageCount), nil
}

// Ack acknowledges deliveryTag (a Delivery's DeliveryTag; with multiple,
// every earlier unacknowledged delivery too; 0 with multiple: all of
// them). A tag from an earlier incarnation of the channel fails with
// ErrStaleDelivery and sends nothing. Prefer Delivery.Ack.
func (ch *Channel) Ack(ctx context.Context, deliveryTag uint64, multiple bool) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	return ch.settle(settleAck, deliveryTag, multiple, false, nil)
}

// Nack negatively acknowledges deliveryTag (basic.nack), like Ack.
func (ch *Channel) Nack(ctx context.Context, deliveryTag uint64, multiple, requeue bool) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	return ch.settle(settleNack, deliveryTag, multiple, requeue, nil)
}

// Reject rejects deliveryTag (basic.reject), like Ack.
func (ch *Channel) Reject(ctx context.Context, deliveryTag uint64, requeue bool) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	return ch.settle(settleReject, deliveryTag, false, requeue, nil)
}

// Recover asks the broker to redeliver unacknowledged messages
// (basic.recover) and waits for recover-ok. RabbitMQ supports only
// requeue=true; requeue=false closes the connection with 540.
func (ch *Channel) Recover(ctx context.Context, requeue bool) error {
	_, _, err := ch.call(ctx, &frames.BasicRecover{Requeue: requeue})
	return err
}

// RecoverAsync is the deprecated asynchronous basic.recover-async.
func (ch *Channel) RecoverAsync(ctx context.Context, requeue bool) error {
	_, _, err := ch.call(ctx, &frames.BasicRecoverAsync{Requeue: requeue})
	return err
}

// Flow asks the broker to pause (false) or resume (true) deliveries on the
// channel (channel.flow). RabbitMQ refuses active=false with 540.
func (ch *Channel) Flow(ctx context.Context, active bool) error {
	_, _, err := ch.call(ctx, &frames.ChannelFlow{Active: active})
	return err
}

// TxSelect puts the channel in transaction mode. The mode survives a
// reopening after a channel error (the transaction in progress does not).
func (ch *Channel) TxSelect(ctx context.Context) error {
	if _, _, err := ch.call(ctx, &frames.TxSelect{}); err != nil {
		return err
	}
	ch.conn.lock()
	ch.tx = true
	ch.conn.unlock(driver.FlushLater)
	return nil
}

// TxCommit commits the current transaction. If the connection was lost
// (and recovered) since the transaction began, the broker discarded its
// work: TxCommit then rolls back what was done since the recovery too and
// returns ErrTxRolledBack, so that the application redoes the whole
// transaction rather than commit half of it.
func (ch *Channel) TxCommit(ctx context.Context) error {
	if err := ch.ready(ctx); err != nil {
		return err
	}
	ch.conn.lock()
	lost := ch.txLost
	ch.txLost = false
	ch.conn.unlock(driver.FlushLater)
	if lost {
		if err := ch.TxRollback(ctx); err != nil {
			return fmt.Errorf("%w (and rolling back what followed failed: %w)", ErrTxRolledBack, err)
		}
		return ErrTxRolledBack
	}
	return ch.endTx(ctx, &frames.TxCommit{})
}

// TxRollback abandons the current transaction.
func (ch *Channel) TxRollback(ctx context.Context) error {
	return ch.endTx(ctx, &frames.TxRollback{})
}

// endTx sends tx.commit or tx.rollback; a new transaction begins.
func (ch *Channel) endTx(ctx context.Context, m frames.Method) error {
	if _, _, err := ch.call(ctx, m); err != nil {
		return err
	}
	ch.conn.lock()
	ch.txDirty, ch.txLost = false, false
	ch.conn.unlock(driver.FlushLater)
	return nil
}
