// Command publish-subscribe is RabbitMQ tutorial three ("Publish/Subscribe")
// with Warren: emit_log publishes log lines to a fanout exchange, which
// copies each to every queue bound to it; every receive_logs declares a
// server-named exclusive queue of its own, binds it, and prints all it gets.
//
//	go run ./examples/publish-subscribe --role receive_logs
//	go run ./examples/publish-subscribe --role emit_log info: Hello World!
//
// A line published while no receiver is bound goes nowhere, as the tutorial
// says: that is fine for logs. A receiver's queue is gone when it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "publish-subscribe:", err)
		os.Exit(1)
	}
}

// config holds the command line.
type config struct {
	url      string
	role     string
	exchange string
	count    int
	duration time.Duration
	timeout  time.Duration
	message  string
}

// run parses args and plays the role they name, printing to stdout:
// emit_log returns once its lines are published; receive_logs after --count
// lines, after --duration, or when ctx ends (Ctrl-C), returning nil for
// those.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("publish-subscribe", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "emit_log or receive_logs")
	fs.StringVar(&c.exchange, "exchange", "logs", "the fanout exchange")
	fs.IntVar(&c.count, "count", 0, "emit_log: lines to send (default 1); receive_logs: stop after this many (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "receive_logs: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "emit_log: give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "emit_log":
		c.message = strings.Join(fs.Args(), " ")
		if c.message == "" {
			c.message = "info: Hello World!"
		}
		if c.count == 0 {
			c.count = 1
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return emit(ctx, c, stdout)
	case "receive_logs":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		if c.duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.duration)
			defer cancel()
		}
		return receive(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be emit_log or receive_logs, not %q", c.role)
	}
}

// dial connects to the broker, bounding the handshake by ctx and 15 s.
func dial(ctx context.Context, url string) (*warren.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	return conn, nil
}

// closeConn closes conn cleanly, also after ctx has ended, within 5 s.
func closeConn(ctx context.Context, conn *warren.Connection) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := conn.Close(ctx); err != nil {
		return fmt.Errorf("closing the connection: %w", err)
	}
	return nil
}

// declare opens a channel and declares the fanout exchange, as both roles
// do.
func declare(ctx context.Context, conn *warren.Connection, exchange string) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(ctx, exchange, "fanout", warren.ExchangeOptions{Durable: true}); err != nil {
		return nil, fmt.Errorf("declaring exchange %q: %w", exchange, err)
	}
	return ch, nil
}

// emit publishes c.count copies of the line to the exchange; a fanout
// exchange ignores the routing key.
func emit(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := dial(ctx, c.url)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeConn(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.exchange)
	if err != nil {
		return err
	}
	for range c.count {
		err := ch.Publish(ctx, c.exchange, "", warren.Publishing{
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

// receive binds a fresh server-named exclusive queue to the exchange and
// prints every line that arrives on it.
func receive(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := dial(ctx, c.url)
	if err != nil {
		return ignoreEnd(ctx, err)
	}
	defer func() { err = errors.Join(err, closeConn(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.exchange)
	if err != nil {
		return ignoreEnd(ctx, err)
	}
	// An empty name: the broker chooses one (amq.gen-…). Exclusive: the
	// queue is this connection's and is deleted when it closes.
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	if err != nil {
		return ignoreEnd(ctx, fmt.Errorf("declaring a queue: %w", err))
	}
	if err := ch.QueueBind(ctx, q.Name, "", c.exchange, warren.BindOptions{}); err != nil {
		return ignoreEnd(ctx, fmt.Errorf("binding %q to %q: %w", q.Name, c.exchange, err))
	}
	cons, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{NoAck: true})
	if err != nil {
		return ignoreEnd(ctx, fmt.Errorf("consuming from %q: %w", q.Name, err))
	}
	fmt.Fprintln(stdout, " [*] Waiting for logs. To exit press CTRL+C")
	for n := 0; c.count == 0 || n < c.count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-cons.Deliveries():
			if !ok {
				return fmt.Errorf("the consumer ended: %w", consumerErr(cons))
			}
			fmt.Fprintf(stdout, " [x] %s\n", d.Body)
		}
	}
	return nil
}

// ignoreEnd turns an error caused by ctx's end (an interrupted receiver)
// into nil.
func ignoreEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// consumerErr is why a consumer ended.
func consumerErr(cons *warren.Consumer) error {
	if err := cons.Err(); err != nil {
		return err
	}
	return errors.New("cancelled")
}
