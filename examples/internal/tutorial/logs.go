package tutorial

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// LogExchange is the durable exchange of log lines that tutorials three
// (fanout), four (direct) and five (topic) emit to and receive from. A line
// is printed as "key:line", or as the line alone on a fanout exchange,
// which ignores routing keys.
type LogExchange struct {
	URL  string // the broker
	Name string // the exchange
	Kind string // "fanout", "direct" or "topic"
	// Mandatory asks the broker to return a line that no queue is bound
	// for; Emit then reports it as not routed.
	Mandatory bool
}

// label is how line, published with routing key key, is printed.
func (x LogExchange) label(key, line string) string {
	if x.Kind == "fanout" {
		return line
	}
	return key + ":" + line
}

// declare opens a channel on conn and declares the exchange, as both
// roles do.
func (x LogExchange) declare(ctx context.Context, conn *warren.Connection) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(ctx, x.Name, x.Kind, warren.ExchangeOptions{Durable: true}); err != nil {
		return nil, fmt.Errorf("declaring exchange %q: %w", x.Name, err)
	}
	return ch, nil
}

// Emit publishes count copies of line to the exchange with routing key
// key, in confirm mode, and reports each one's fate on stdout: sent, or
// not routed (returned, when Mandatory). A line the broker nacks is an
// error.
func (x LogExchange) Emit(ctx context.Context, key, line string, count int, stdout io.Writer) (err error) {
	conn, err := Dial(ctx, x.URL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, Close(ctx, conn)) }()
	ch, err := x.declare(ctx, conn)
	if err != nil {
		return err
	}
	if err := ch.ConfirmSelect(ctx); err != nil {
		return fmt.Errorf("entering confirm mode: %w", err)
	}
	label := x.label(key, line)
	for range count {
		cf, err := ch.PublishWithConfirm(ctx, x.Name, key, warren.Publishing{
			Mandatory:  x.Mandatory,
			Properties: proto.Properties{ContentType: "text/plain"},
			Body:       []byte(line),
		})
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		acked, err := cf.Wait(ctx)
		if err != nil {
			return fmt.Errorf("waiting for the confirm: %w", err)
		}
		if !acked {
			return fmt.Errorf("the broker refused (nacked) %s", label)
		}
		// A return always comes before the confirm of its publish.
		if r := cf.Returned(); r != nil {
			fmt.Fprintf(stdout, " [!] %s was not routed (%d %s)\n", label, r.ReplyCode, r.ReplyText)
			continue
		}
		fmt.Fprintf(stdout, " [x] Sent %s\n", label)
	}
	return nil
}

// Receive binds a fresh server-named exclusive queue to the exchange, once
// per key in keys (once with no key when keys is empty, as a fanout
// exchange wants), and prints every line that arrives on it (once, even
// when it matches several keys) until count lines have come (0: no limit)
// or ctx ends, returning nil for either.
func (x LogExchange) Receive(ctx context.Context, keys []string, count int, stdout io.Writer) (err error) {
	conn, err := Dial(ctx, x.URL)
	if err != nil {
		return IgnoreEnd(ctx, err)
	}
	defer func() { err = errors.Join(err, Close(ctx, conn)) }()
	ch, err := x.declare(ctx, conn)
	if err != nil {
		return IgnoreEnd(ctx, err)
	}
	// An empty name: the broker chooses one (amq.gen-…). Exclusive: the
	// queue is this connection's and is deleted when it closes.
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	if err != nil {
		return IgnoreEnd(ctx, fmt.Errorf("declaring a queue: %w", err))
	}
	if len(keys) == 0 {
		if err := ch.QueueBind(ctx, q.Name, "", x.Name, warren.BindOptions{}); err != nil {
			return IgnoreEnd(ctx, fmt.Errorf("binding %q to %q: %w", q.Name, x.Name, err))
		}
	}
	for _, k := range keys {
		if err := ch.QueueBind(ctx, q.Name, k, x.Name, warren.BindOptions{}); err != nil {
			return IgnoreEnd(ctx, fmt.Errorf("binding %q to %q with %q: %w", q.Name, x.Name, k, err))
		}
	}
	cons, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{NoAck: true})
	if err != nil {
		return IgnoreEnd(ctx, fmt.Errorf("consuming from %q: %w", q.Name, err))
	}
	fmt.Fprintln(stdout, " [*] Waiting for logs. To exit press CTRL+C")
	return Print(ctx, cons, count, stdout, func(d warren.Delivery) string {
		return " [x] " + x.label(d.RoutingKey, string(d.Body))
	})
}
