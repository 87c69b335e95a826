package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warren-amqp/warren"
)

const consumeAbout = `
Consumes from QUEUE and prints each message on stdout, then acknowledges it
(unless --no-ack): a message is acknowledged only once it was written, so a
message that could not be printed goes back to the queue.

Output: one line per message, the routing key, a tab and the body (quoted
Go-style unless it is printable text); with --json, one JSON object per line
(see the README for its fields and for the mapping of header values).

Stops after --count messages, when --timeout passes without a message, or on
Ctrl-C; each of these exits 0, whether or not anything was consumed. A broker
or connection error, or the broker cancelling the consumer (the queue was
deleted), exits 1.

A lost connection (the broker restarted, an operator closed it, the network
failed) is recovered: warren reconnects, trying each --url in turn, and
consumes again on the same queue, for up to --recovery-timeout. Messages
printed but not yet acknowledged when the connection was lost are delivered
again (flagged redelivered): consume prints every message at least once. A
connection lost again before a message arrived since the last recovery ends
warren with the error.

With --count N the prefetch is lowered to at most N and the last prefetch-many
acknowledgements wait until the consumer is cancelled, so that the broker
never hands out more than N messages. With --no-ack the broker considers a
message delivered as soon as it sends it: messages in flight when warren
stops are lost.`

func runConsume(e *env, args []string) error {
	err := consume(e, args)
	return e.watchErr(err)
}

func consume(e *env, args []string) error {
	f := newFlags(e, "warren consume --queue Q [--count N] [--timeout D] [--prefetch N] [--no-ack] [--json]", consumeAbout)
	queue := f.String("queue", "", "queue to consume from (required)")
	count := f.Int("count", 0, "stop after `N` messages (0: no limit)")
	timeout := f.Duration("timeout", 0, "stop when no message arrives for this long (0: wait forever)")
	prefetch := f.Int("prefetch", 100, "unacknowledged messages the broker may send ahead (basic.qos)")
	noAck := f.Bool("no-ack", false, "consume without acknowledgements")
	asJSON := f.Bool("json", false, "print one JSON object per message")
	maxSize := f.Uint64("max-message-size", 0, "skip (and reject without requeue) messages whose body is larger than `bytes`,\nreporting each on stderr (0: the library's default, 128 MiB)")
	watch := f.recoveryFlag()
	if err := f.parseFlagsOnly(args, "queue"); err != nil {
		return err
	}
	if *count < 0 || *timeout < 0 || *prefetch < 1 || *prefetch > 65535 {
		return usageErrorf("--count and --timeout must not be negative, --prefetch must be 1 to 65535")
	}
	pf := *prefetch
	if *count > 0 && pf > *count {
		pf = *count
	}
	conn, err := f.dial(warren.Config{ConsumerBuffer: max(pf, 256), MaxMessageSize: *maxSize})
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	ch, err := e.openChannel(conn)
	if err != nil {
		return err
	}
	if !*noAck {
		ctx, done := e.rpc("basic.qos")
		if err := done(ch.Qos(ctx, warren.QosOptions{PrefetchCount: pf})); err != nil {
			return err
		}
	}
	// --timeout bounds the wait for consume-ok too.
	wait := e.rpcTimeout
	if *timeout > 0 {
		wait = min(wait, *timeout)
	}
	ctx, done := e.rpcWithin("basic.consume", wait)
	cons, err := ch.Consume(ctx, *queue, warren.ConsumeOptions{NoAck: *noAck})
	if err = done(err); err != nil {
		return err
	}

	// Acknowledge message i at once only while i+prefetch <= count: the
	// broker then never has a reason to send message count+1.
	ackNowUpTo := -1
	if *count > 0 {
		ackNowUpTo = *count - pf
	}
	var held *warren.Delivery // the last printed, unacknowledged delivery
	n := 0
	var idle <-chan time.Time
	var timer *time.Timer
	if *timeout > 0 {
		timer = time.NewTimer(*timeout)
		defer timer.Stop()
		idle = timer.C
	}
	stopErr := func() error { // cancel the consumer, then ack what is held
		ctx, cancel := context.WithTimeout(context.Background(), e.closeWait())
		defer cancel()
		var err error
		if conn.IsAlive() {
			if err = cons.Cancel(ctx); errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer from the broker to basic.cancel within %s", e.closeWait())
			}
		}
		if held != nil {
			// A delivery from before a recovery cannot be acked (the
			// broker delivers it again): not a failure.
			if aerr := held.Ack(true); aerr != nil && err == nil && !errors.Is(aerr, warren.ErrStaleDelivery) {
				err = aerr
			}
		}
		return err
	}
loop:
	for *count == 0 || n < *count {
		select {
		case d, ok := <-cons.Deliveries():
			if !ok {
				if err := cons.Err(); err != nil {
					return err
				}
				if err := conn.Err(); err != nil {
					return err
				}
				return errors.New("the consumer ended unexpectedly")
			}
			n++
			watch.made()
			var line []byte
			if *asJSON {
				line = messageJSON(&d, false)
			} else {
				line = messageText(&d)
			}
			if _, err := e.stdout.Write(append(line, '\n')); err != nil {
				_ = stopErr()
				return fmt.Errorf("writing message %d: %w", n, err)
			}
			if !*noAck {
				if ackNowUpTo < 0 || n <= ackNowUpTo {
					if err := d.Ack(false); err != nil && !errors.Is(err, warren.ErrStaleDelivery) {
						return err
					}
				} else {
					held = &d
				}
			}
			if timer != nil {
				timer.Reset(*timeout)
			}
		case <-idle:
			break loop
		case <-e.ctx.Done():
			break loop
		}
	}
	if err := stopErr(); err != nil && !errors.Is(err, warren.ErrClosed) {
		return err
	}
	return nil
}

const getAbout = `
Fetches one message from QUEUE with basic.get, prints it like consume does
(the JSON object also has message_count: the messages left in the queue),
and acknowledges it unless --no-ack.

When the queue is empty, prints "queue Q is empty" on stderr and exits 3.`

func runGet(e *env, args []string) error {
	f := newFlags(e, "warren get --queue Q [--json] [--no-ack]", getAbout)
	queue := f.String("queue", "", "queue to get from (required)")
	noAck := f.Bool("no-ack", false, "get without acknowledgement")
	asJSON := f.Bool("json", false, "print the message as a JSON object")
	if err := f.parseFlagsOnly(args, "queue"); err != nil {
		return err
	}
	conn, ch, err := f.dialChannel()
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	ctx, done := e.rpc("basic.get")
	d, ok, err := ch.Get(ctx, *queue, *noAck)
	if err = done(err); err != nil {
		return err
	}
	if !ok {
		return &exitError{code: exitEmpty, err: fmt.Errorf("queue %s is empty", *queue)}
	}
	var line []byte
	if *asJSON {
		line = messageJSON(&d, true)
	} else {
		line = messageText(&d)
	}
	if _, err := e.stdout.Write(append(line, '\n')); err != nil {
		return err
	}
	if !*noAck {
		if err := d.Ack(false); err != nil {
			return err
		}
		// Close cleanly so that the ack reaches the broker before exiting.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		return conn.Close(ctx)
	}
	return nil
}
