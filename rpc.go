package warren

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/warren-amqp/warren/internal/driver"
)

// DirectReplyTo is RabbitMQ's direct reply-to pseudo-queue: a requester
// consumes it (no-ack) and names it as a request's ReplyTo; the broker
// routes the reply straight back to the requester's channel.
const DirectReplyTo = "amq.rabbitmq.reply-to"

// ErrRequestReturned is wrapped by the error of a Call whose request no
// queue took: the broker returned it (mandatory). The error also wraps
// the return's reply code (errors.Is(err, NoRoute)).
var ErrRequestReturned = errors.New("amqp: request returned by the broker")

// ErrRequestNacked is wrapped by the error of a Call whose request the
// broker nacked (it could not take responsibility for it).
var ErrRequestNacked = errors.New("amqp: request nacked by the broker")

// ErrReplyLost is wrapped, with ErrConnectionLost (so IsRecoverable
// holds), by the error of a Call pending when the connection was lost:
// the reply, addressed to the lost channel, can no longer arrive. Call
// again: once the connection has recovered the next call gets its reply.
var ErrReplyLost = errors.New("amqp: the reply to a pending call was lost with the connection")

// RPCClient makes request/reply calls over RabbitMQ's direct reply-to:
// many concurrent calls share one channel of their own and one no-ack
// consumer of DirectReplyTo, each matched to its reply by a correlation
// id. Requests are published mandatory and in confirm mode, so that a
// request no queue takes fails at once (ErrRequestReturned) instead of
// waiting for a reply that cannot come.
//
// An RPCClient is safe for concurrent use. It survives recovery: a call
// pending at a connection loss fails with ErrReplyLost, and calls made
// while the connection recovers wait for it (bounded by their contexts).
type RPCClient struct {
	conn   *Connection
	ch     *Channel
	cons   *Consumer
	prefix string
	seq    atomic.Uint64
	losses *listener[RecoveryEvent]

	mu      sync.Mutex
	pending map[string]*rpcCall
	closed  bool
}

// rpcCall is one call waiting for its reply.
type rpcCall struct {
	done  chan struct{} // closed once reply or err is set
	reply Delivery
	err   error
}

// NewRPCClient opens a channel on conn for request/reply calls, in
// confirm mode, consuming DirectReplyTo. Close it when done.
func NewRPCClient(ctx context.Context, conn *Connection) (*RPCClient, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("amqp: rpc client: %w", err)
	}
	c := &RPCClient{conn: conn, ch: ch, pending: make(map[string]*rpcCall),
		prefix: strconv.FormatUint(rand.Uint64(), 36) + "."}
	fail := func(err error) (*RPCClient, error) {
		_ = ch.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("amqp: rpc client: %w", err)
	}
	if err := ch.ConfirmSelect(ctx); err != nil {
		return fail(err)
	}
	c.cons, err = ch.Consume(ctx, DirectReplyTo, ConsumeOptions{NoAck: true, Handler: c.onReply})
	if err != nil {
		return fail(err)
	}
	c.losses = newFuncListener(c.onRecovery, conn.log, "rpc recovery")
	conn.lock()
	if conn.ended {
		conn.unlock(driver.FlushLater)
		return fail(ErrClosed)
	}
	ls := conn.listenersLocked()
	ls.rec = append(ls.rec, c.losses)
	conn.unlock(driver.FlushLater)
	return c, nil
}

// onReply hands a reply to its call (on the connection's reader
// goroutine: quick). A reply for no pending call (its caller gave up) is
// dropped.
func (c *RPCClient) onReply(d Delivery) {
	c.mu.Lock()
	call := c.pending[d.Properties.CorrelationID]
	delete(c.pending, d.Properties.CorrelationID)
	c.mu.Unlock()
	if call == nil {
		c.conn.log.Debug("amqp rpc reply for no pending call dropped", "correlation_id", d.Properties.CorrelationID)
		return
	}
	call.reply = d
	close(call.done)
}

// onRecovery fails the pending calls when the connection is lost: their
// replies were addressed to the lost channel.
func (c *RPCClient) onRecovery(e RecoveryEvent) {
	if e.Kind != RecoveryLost {
		return
	}
	c.failPending(fmt.Errorf("%w: %w: %w", ErrReplyLost, ErrConnectionLost, e.Err))
}

func (c *RPCClient) failPending(err error) {
	c.mu.Lock()
	calls := c.pending
	c.pending = make(map[string]*rpcCall)
	c.mu.Unlock()
	for _, call := range calls {
		call.err = err
		close(call.done)
	}
}

// Call publishes msg to exchange with routingKey as a request and returns
// the reply. It sets msg's ReplyTo (DirectReplyTo) and CorrelationID (a
// unique id) and publishes it mandatory, then waits for the broker's
// confirm and for the reply, bounded by ctx (the request's Expiration
// property, if you set one, is the broker's bound).
//
// It fails with an error wrapping ErrRequestReturned (and the reply code,
// usually NoRoute) when no queue took the request, ErrRequestNacked when
// the broker nacked it, ErrReplyLost when the connection was lost before
// the reply came (IsRecoverable: call again), or ctx's error.
func (c *RPCClient) Call(ctx context.Context, exchange, routingKey string, msg Publishing) (Delivery, error) {
	id := c.prefix + strconv.FormatUint(c.seq.Add(1), 36)
	call := &rpcCall{done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Delivery{}, fmt.Errorf("amqp: rpc call: %w", ErrClosed)
	}
	c.pending[id] = call
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	msg.Mandatory = true
	msg.Properties.ReplyTo = DirectReplyTo
	msg.Properties.CorrelationID = id
	cf, err := c.ch.PublishWithConfirm(ctx, exchange, routingKey, msg)
	if err != nil {
		forget()
		return Delivery{}, fmt.Errorf("amqp: rpc call: %w", err)
	}
	acked, err := cf.Wait(ctx)
	switch {
	case err != nil:
		forget()
		return Delivery{}, fmt.Errorf("amqp: rpc call: %w", err)
	case cf.Returned() != nil:
		forget()
		r := cf.Returned()
		return Delivery{}, fmt.Errorf("%w to exchange %q with routing key %q: %w", ErrRequestReturned, exchange, routingKey, r.ReplyCode)
	case !acked:
		forget()
		return Delivery{}, fmt.Errorf("%w (exchange %q, routing key %q)", ErrRequestNacked, exchange, routingKey)
	}
	if err := c.conn.await(ctx, call.done); err != nil {
		forget()
		return Delivery{}, fmt.Errorf("amqp: rpc call: no reply: %w", err)
	}
	if call.err != nil {
		return Delivery{}, call.err
	}
	return call.reply, nil
}

// Close fails the pending calls with ErrClosed, cancels the reply
// consumer and closes the client's channel.
func (c *RPCClient) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.failPending(fmt.Errorf("amqp: rpc call: %w", ErrClosed))
	conn := c.conn
	conn.lock()
	if ls := conn.lis; ls != nil {
		ls.rec = slices.DeleteFunc(ls.rec, func(l *listener[RecoveryEvent]) bool { return l == c.losses })
	}
	conn.unlock(driver.FlushLater)
	c.losses.close()
	err := c.ch.Close(ctx)
	if errors.Is(err, ErrClosed) {
		err = nil // the connection closed first: nothing left to close
	}
	return err
}

// RPCHandler answers one request: the reply's body and properties (Call
// sets its ReplyTo and CorrelationID). An error rejects the request
// without requeue (so that a poisonous request cannot loop) and sends no
// reply; the caller's Call then ends by its context.
type RPCHandler func(ctx context.Context, request Delivery) (Publishing, error)

// RPCServerOptions configure ServeRPC.
type RPCServerOptions struct {
	// Prefetch is how many requests may be unacknowledged at once;
	// default 1 (requests are answered one at a time, in order).
	Prefetch int
}

// ServeRPC consumes queue on ch and answers each request with handler:
// the reply goes to the request's ReplyTo with its CorrelationID, through
// the default exchange, and the request is acknowledged once the reply
// is published. A request without ReplyTo is acknowledged and dropped
// (logged). It returns when ctx ends (then the consumer is cancelled and
// ServeRPC returns ctx's error) or the consumer ends (its error).
func ServeRPC(ctx context.Context, ch *Channel, queue string, handler RPCHandler, opts RPCServerOptions) error {
	if opts.Prefetch <= 0 {
		opts.Prefetch = 1
	}
	if err := ch.Qos(ctx, QosOptions{PrefetchCount: opts.Prefetch}); err != nil {
		return fmt.Errorf("amqp: rpc server: %w", err)
	}
	cons, err := ch.Consume(ctx, queue, ConsumeOptions{})
	if err != nil {
		return fmt.Errorf("amqp: rpc server: %w", err)
	}
	for req, err := range cons.Messages(ctx) {
		if err != nil {
			return fmt.Errorf("amqp: rpc server: %w", err)
		}
		if err := answer(ctx, ch, req, handler); err != nil {
			return fmt.Errorf("amqp: rpc server: %w", err)
		}
	}
	return nil // the consumer was cancelled
}

// answer runs handler for one request and settles it.
func answer(ctx context.Context, ch *Channel, req Delivery, handler RPCHandler) error {
	if req.Properties.ReplyTo == "" {
		ch.conn.log.Warn("amqp rpc request without reply_to dropped", "delivery_tag", req.DeliveryTag, "routing_key", req.RoutingKey)
		return req.Ack(false)
	}
	reply, err := handler(ctx, req)
	if err != nil {
		ch.conn.log.Warn("amqp rpc handler failed: request rejected", "error", err, "correlation_id", req.Properties.CorrelationID)
		return req.Reject(false)
	}
	reply.Properties.CorrelationID = req.Properties.CorrelationID
	if err := ch.Publish(ctx, "", req.Properties.ReplyTo, reply); err != nil {
		return err
	}
	return req.Ack(false)
}
