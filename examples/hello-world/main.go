// Command hello-world is RabbitMQ tutorial one ("Hello World!") with
// Warren: a sender publishes a message to a named queue through the default
// exchange, and a receiver consumes from that queue and prints what it gets.
//
//	go run ./examples/hello-world --role receive --count 1
//	go run ./examples/hello-world --role send
//
// Both roles declare the queue (non-durable, as in the tutorial), so either
// may start first; a message sent while the queue does not exist yet is
// dropped by the broker. The receiver consumes with automatic
// acknowledgement: a message is gone from the queue once it is delivered,
// so a receiver stopped by --count loses whatever the broker had already
// pushed to it beyond that count (work-queues shows manual acknowledgement,
// which does not).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/tutorial"
	"github.com/warren-amqp/warren/proto"
)

func main() { tutorial.Main("hello-world", run) }

// config holds the command line.
type config struct {
	url      string
	role     string
	queue    string
	count    int
	duration time.Duration
	timeout  time.Duration
	message  string
}

// run parses args and plays the role they name, printing to stdout. It
// returns when the role's work is done, when --duration has passed (receive)
// or when ctx ends (a receiver then returns nil, like one stopped with
// Ctrl-C).
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hello-world", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "send or receive")
	fs.StringVar(&c.queue, "queue", "hello", "the queue to send to and receive from")
	fs.IntVar(&c.count, "count", 0, "send: messages to send (default 1); receive: stop after this many (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "receive: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "send: give up after this long")
	fs.StringVar(&c.message, "message", "Hello World!", "send: the message body")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "send":
		if c.count == 0 {
			c.count = 1
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return send(ctx, c, stdout)
	case "receive":
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		return receive(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be send or receive, not %q", c.role)
	}
}

// declare opens a channel and declares the queue, as both roles do.
func declare(ctx context.Context, conn *warren.Connection, queue string) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if _, err := ch.QueueDeclare(ctx, queue, warren.QueueOptions{}); err != nil {
		return nil, fmt.Errorf("declaring queue %q: %w", queue, err)
	}
	return ch, nil
}

// send publishes c.count messages to c.queue through the default exchange.
func send(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.queue)
	if err != nil {
		return err
	}
	for range c.count {
		err := ch.Publish(ctx, "", c.queue, warren.Publishing{
			Properties: proto.Properties{ContentType: "text/plain"},
			Body:       []byte(c.message),
		})
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		fmt.Fprintf(stdout, " [x] Sent %s\n", c.message)
	}
	return nil
}

// receive consumes from c.queue with automatic acknowledgement and prints
// every message, until c.count messages have come or ctx ends.
func receive(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, err)
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.queue)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, err)
	}
	cons, err := ch.Consume(ctx, c.queue, warren.ConsumeOptions{NoAck: true})
	if err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("consuming from %q: %w", c.queue, err))
	}
	fmt.Fprintln(stdout, " [*] Waiting for messages. To exit press CTRL+C")
	return tutorial.Print(ctx, cons, c.count, stdout, func(d warren.Delivery) string {
		return " [x] Received " + string(d.Body)
	})
}
