// Command routing is RabbitMQ tutorial four ("Routing") with Warren:
// emit_log_direct publishes log lines to a direct exchange with their
// severity as the routing key, and each receive_logs_direct binds its own
// server-named queue with the severities it wants, so it gets only those.
//
//	go run ./examples/routing --role receive_logs_direct warning error
//	go run ./examples/routing --role emit_log_direct --severity error Run. Run. Or it will explode.
//
// Unlike the tutorial's emitter, this one publishes in confirm mode with
// the mandatory flag, so it can say what became of each line: the broker
// returns a line that no queue is bound for (" [!] … was not routed")
// before it confirms it.
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
		fmt.Fprintln(os.Stderr, "routing:", err)
		os.Exit(1)
	}
}

// config holds the command line.
type config struct {
	url        string
	role       string
	exchange   string
	severity   string
	severities []string
	count      int
	duration   time.Duration
	timeout    time.Duration
	message    string
}

// run parses args and plays the role they name, printing to stdout:
// emit_log_direct returns once its lines are confirmed; receive_logs_direct
// after --count lines, after --duration, or when ctx ends (Ctrl-C),
// returning nil for those.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("routing", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "emit_log_direct, or receive_logs_direct followed by severities")
	fs.StringVar(&c.exchange, "exchange", "direct_logs", "the direct exchange")
	fs.StringVar(&c.severity, "severity", "info", "emit_log_direct: the line's severity, its routing key")
	fs.IntVar(&c.count, "count", 0, "emit_log_direct: lines to send (default 1); receive_logs_direct: stop after this many (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "receive_logs_direct: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "emit_log_direct: give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "emit_log_direct":
		c.message = strings.Join(fs.Args(), " ")
		if c.message == "" {
			c.message = "Hello World!"
		}
		if c.count == 0 {
			c.count = 1
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return emit(ctx, c, stdout)
	case "receive_logs_direct":
		c.severities = fs.Args()
		if len(c.severities) == 0 {
			return errors.New("receive_logs_direct needs severities: --role receive_logs_direct [info] [warning] [error]")
		}
		if c.duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.duration)
			defer cancel()
		}
		return receive(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be emit_log_direct or receive_logs_direct, not %q", c.role)
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

// declare opens a channel and declares the direct exchange, as both roles
// do.
func declare(ctx context.Context, conn *warren.Connection, exchange string) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(ctx, exchange, "direct", warren.ExchangeOptions{Durable: true}); err != nil {
		return nil, fmt.Errorf("declaring exchange %q: %w", exchange, err)
	}
	return ch, nil
}

// emit publishes c.count copies of the line with the severity as routing
// key, mandatory and in confirm mode, and reports each one's fate.
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
	if err := ch.ConfirmSelect(ctx); err != nil {
		return fmt.Errorf("entering confirm mode: %w", err)
	}
	for range c.count {
		cf, err := ch.PublishWithConfirm(ctx, c.exchange, c.severity, warren.Publishing{
			Mandatory:  true,
			Properties: proto.Properties{ContentType: "text/plain"},
			Body:       []byte(c.message),
		})
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		acked, err := cf.Wait(ctx)
		if err != nil {
			return fmt.Errorf("waiting for the confirm: %w", err)
		}
		if !acked {
			return fmt.Errorf("the broker refused (nacked) %s:%s", c.severity, c.message)
		}
		// A return always comes before the confirm of its publish.
		if r := cf.Returned(); r != nil {
			fmt.Fprintf(stdout, " [!] %s:%s was not routed (%d %s)\n", c.severity, c.message, r.ReplyCode, r.ReplyText)
			continue
		}
		fmt.Fprintf(stdout, " [x] Sent %s:%s\n", c.severity, c.message)
	}
	return nil
}

// receive binds a fresh server-named exclusive queue to the exchange once
// per severity and prints every line that arrives on it.
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
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	if err != nil {
		return ignoreEnd(ctx, fmt.Errorf("declaring a queue: %w", err))
	}
	for _, s := range c.severities {
		if err := ch.QueueBind(ctx, q.Name, s, c.exchange, warren.BindOptions{}); err != nil {
			return ignoreEnd(ctx, fmt.Errorf("binding %q to %q with %q: %w", q.Name, c.exchange, s, err))
		}
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
			fmt.Fprintf(stdout, " [x] %s:%s\n", d.RoutingKey, d.Body)
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
