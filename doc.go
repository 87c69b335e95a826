// Package warren is an AMQP 0-9-1 client for RabbitMQ and other brokers:
// connections, channels, publishing with confirms, consumers, topology,
// and every RabbitMQ extension (publisher confirms with nacks, consumer
// cancel notifications, exchange-to-exchange bindings, connection.blocked,
// update-secret), automatic recovery, request/reply over direct reply-to
// and credentials that refresh themselves.
//
//	conn, err := warren.Dial(ctx, "amqp://guest:guest@localhost:5672/")
//	ch, err := conn.Channel(ctx)
//	err = ch.ConfirmSelect(ctx)
//	cf, err := ch.PublishWithConfirm(ctx, "", "orders", warren.Publishing{Body: body})
//	acked, err := cf.Wait(ctx)
//
// # Layers
//
// The package is the top of three layers, each depending only on those
// below it:
//
//   - warren: Connection, Channel, Consumer, Confirmation and the
//     application's side of the protocol (what it waits for, what it
//     declared, its listeners). It holds no socket and does not know which
//     goroutine reads or writes.
//   - internal/driver: owns the net.Conn, the protocol core, the reader
//     and writer goroutines, the clock and the buffers; its package
//     documentation explains who reads and writes, and when that changes
//     hands.
//   - proto/statemachine: the sans-IO protocol core (bytes in, events and
//     bytes out, time passed in), usable on its own in any event loop.
//
// # Calls that wait
//
// Every call that can block takes a context.Context first and returns when
// it ends, also while the broker blocks the connection, stops reading or
// never answers. A context bounds the wait, not the broker's operation: a
// request whose caller gave up is still answered, and its reply consumed,
// in order. All of them wait in the driver's one wait (driver.Await),
// which on a quiet connection lets the waiting goroutine read its answer
// itself instead of being woken for it.
//
// # Channels and their incarnations
//
// A Channel survives channel errors: the next call after one reopens it
// and replays its confirm mode, QoS and transaction mode. The broker
// numbers deliveries and publishes from 1 on every opening; the Channel
// adds the earlier incarnations' counts, so Delivery.DeliveryTag and
// Confirmation.Seq never repeat on a Channel, and acknowledging a delivery
// from a closed incarnation returns ErrStaleDelivery without sending
// anything (the broker redelivers the message).
//
// # Recovery
//
// A connection made by Dial, DialWith, DialAny or Connect recovers from a
// loss (a network failure, a missed heartbeat, a broker restart or an
// operator's close) on its own: it dials again, walking its addresses with
// backoff, restores its channels and what was declared through it, and
// carries on under the same *Connection, *Channel and *Consumer values;
// tags and sequence numbers keep increasing across recoveries as across
// incarnations. A loss that recovery handles is reported only to
// NotifyRecovery listeners (lost, retrying, recovered, gave up) and the
// Logger; NotifyClose, Done, Err and the closing of Deliveries happen once,
// when the connection ends for good. State tells open, recovering and
// closed apart; IsAlive is false while recovering. Recovery documents what
// is restored, in what order, what is not, and what happens to work in
// flight; Config.Recovery configures it (or turns it off). A Connection
// opened with Open over a net.Conn it cannot dial again does not recover.
//
// # Notifications
//
// Connection.NotifyClose, Connection.NotifyBlocked, Channel.NotifyClose,
// Channel.NotifyReturn and Channel.NotifyConfirm register Go channels.
// Every notification is delivered, in order, and none ever makes the
// connection wait: when the channel has no room, notifications are held
// for it (blocked/unblocked ones fold into the latest state) until the
// application receives them. Close notifications carry the same error as
// Err, so errors.Is(err, ErrConnectionLost) and errors.As into a
// *ConnectionError work on them.
//
// # Observability
//
// Config.Observer installs an Observer: hooks told of every publish (with
// its caller's context, before the message is encoded, so that it can add
// trace-context headers), its confirm or return, every delivery and its
// hand-off to the application, the application's acks, nacks and rejects,
// and the connection's openings, end, recovery events and blocked state.
// With no Observer they cost a nil check: publishing, delivering and
// acknowledging allocate nothing (TestAllocClientPaths). The hooks run on
// the caller's or the reader's goroutine, some with the connection's lock
// held (Observer says which): they must be quick and must not call back
// into the connection. The module github.com/warren-amqp/warren/otelwarren
// implements one with OpenTelemetry (spans after the messaging semantic
// conventions, W3C trace context in headers, metrics), so that this module
// has no OpenTelemetry dependency.
//
// # Consumers
//
// Deliveries arrive on a bounded Go channel (Consumer.Deliveries), or, with
// ConsumeOptions.Handler, through a function called on the reader
// goroutine. A full consumer buffer pushes back on the broker through TCP
// rather than growing memory or dropping a message. Consumer.Messages
// ranges over them as an iter.Seq2[Delivery, error]; its context's end
// cancels the consumer. The context passed to Consume bounds only the
// basic.consume request.
//
// # Request/reply
//
// RPCClient makes calls over RabbitMQ's direct reply-to: Call publishes a
// request (mandatory, confirmed) and returns its reply, matched by
// correlation id, many calls at once over one channel. ServeRPC answers
// the requests of a queue. A call pending at a connection loss fails with
// ErrReplyLost (recoverable); the next one, after the recovery, succeeds.
//
// # Credentials
//
// Config.Credentials takes a CredentialsProvider (a username and a
// secret with an expiry, an OAuth 2 token for instance): asked at every
// connection attempt, and again before the secret expires, when the new
// one goes to the broker with connection.update-secret, without
// reconnecting.
//
// # Errors
//
// Reply codes are errors.Is targets (errors.Is(err, warren.NotFound));
// *ConnectionError and *ChannelError (errors.As) carry the code, text,
// failing method and who closed; the client's own conditions are
// sentinels (ErrClosed, ErrConnectionLost, ErrHeartbeatTimeout,
// ErrMaybeSent, ErrNotSent, ErrRecovering, ErrGaveUp, …) wrapped with %w;
// IsRecoverable says whether retrying may succeed. See ExampleChannelError.
package warren
