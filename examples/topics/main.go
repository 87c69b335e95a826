// Command topics is RabbitMQ tutorial five ("Topics") with Warren:
// emit_log_topic publishes log lines to a topic exchange with routing keys
// of dot-separated words ("<facility>.<severity>", say "kern.critical"), and
// each receive_logs_topic binds its own server-named queue with binding
// keys, patterns in which "*" stands for exactly one word and "#" for zero
// or more, so it gets the lines whose keys match any of them.
//
//	go run ./examples/topics --role receive_logs_topic "kern.*" "*.critical"
//	go run ./examples/topics --role emit_log_topic --key kern.critical A critical kernel error
//
// Unlike the tutorial's emitter, this one publishes in confirm mode with
// the mandatory flag, so it can say what became of each line: the broker
// returns a line whose key matches no binding (" [!] … was not routed")
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
		fmt.Fprintln(os.Stderr, "topics:", err)
		os.Exit(1)
	}
}

// config holds the command line.
type config struct {
	url      string
	role     string
	exchange string
	key      string
	bindings []string
	count    int
	duration time.Duration
	timeout  time.Duration
	message  string
}

// run parses args and plays the role they name, printing to stdout:
// emit_log_topic returns once its lines are confirmed; receive_logs_topic
// after --count lines, after --duration, or when ctx ends (Ctrl-C),
// returning nil for those.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "emit_log_topic, or receive_logs_topic followed by binding keys")
	fs.StringVar(&c.exchange, "exchange", "topic_logs", "the topic exchange")
	fs.StringVar(&c.key, "key", "anonymous.info", "emit_log_topic: the line's routing key, words separated by dots")
	fs.IntVar(&c.count, "count", 0, "emit_log_topic: lines to send (default 1); receive_logs_topic: stop after this many (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "receive_logs_topic: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "emit_log_topic: give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "emit_log_topic":
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
	case "receive_logs_topic":
		c.bindings = fs.Args()
		if len(c.bindings) == 0 {
			return errors.New("receive_logs_topic needs binding keys: --role receive_logs_topic [binding_key]...")
		}
		if c.duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.duration)
			defer cancel()
		}
		return receive(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be emit_log_topic or receive_logs_topic, not %q", c.role)
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

// declare opens a channel and declares the topic exchange, as both roles
// do.
func declare(ctx context.Context, conn *warren.Connection, exchange string) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(ctx, exchange, "topic", warren.ExchangeOptions{Durable: true}); err != nil {
		return nil, fmt.Errorf("declaring exchange %q: %w", exchange, err)
	}
	return ch, nil
}

// emit publishes c.count copies of the line with c.key as routing key,
// mandatory and in confirm mode, and reports each one's fate.
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
		cf, err := ch.PublishWithConfirm(ctx, c.exchange, c.key, warren.Publishing{
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
			return fmt.Errorf("the broker refused (nacked) %s:%s", c.key, c.message)
		}
		// A return always comes before the confirm of its publish.
		if r := cf.Returned(); r != nil {
			fmt.Fprintf(stdout, " [!] %s:%s was not routed (%d %s)\n", c.key, c.message, r.ReplyCode, r.ReplyText)
			continue
		}
		fmt.Fprintf(stdout, " [x] Sent %s:%s\n", c.key, c.message)
	}
	return nil
}

// receive binds a fresh server-named exclusive queue to the exchange once
// per binding key and prints every line that arrives on it (once, even when
// its key matches several binding keys).
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
	for _, s := range c.bindings {
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
