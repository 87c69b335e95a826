// Command rpc is RabbitMQ tutorial six ("Remote procedure call") with
// Warren: a server takes requests from a queue and answers each with the
// Fibonacci number it asks for, publishing the answer to the request's
// reply_to address with its correlation_id; the client sends requests and
// matches the answers to them by correlation id.
//
//	go run ./examples/rpc --role server
//	go run ./examples/rpc --role client 30
//
// The client receives its answers through RabbitMQ's direct reply-to: it
// consumes the pseudo-queue amq.rabbitmq.reply-to without acknowledgements
// and names it as reply_to, so no reply queue is declared at all. It
// publishes requests with the mandatory flag, so a request that no server
// queue takes comes back at once instead of timing out.
//
// fib is the tutorial's deliberately slow recursive one; the server accepts
// n from 0 to 40 and answers anything else with an error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/tutorial"
	"github.com/warren-amqp/warren/proto"
)

// replyTo is RabbitMQ's direct reply-to pseudo-queue.
const replyTo = "amq.rabbitmq.reply-to"

// maxN is the largest n the server computes fib of.
const maxN = 40

func main() { tutorial.Main("rpc", run) }

// config holds the command line.
type config struct {
	url      string
	role     string
	queue    string
	count    int
	duration time.Duration
	timeout  time.Duration
	ns       []int
}

// run parses args and plays the role they name, printing to stdout: the
// client returns once every request is answered (or fails); the server after
// --count requests, after --duration, or when ctx ends (Ctrl-C), returning
// nil for those.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("rpc", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "server, or client followed by the numbers n to ask fib(n) of (default 30)")
	fs.StringVar(&c.queue, "queue", "rpc_queue", "the request queue")
	fs.IntVar(&c.count, "count", 0, "server: stop after answering this many requests (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "server: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "client: how long to wait for each answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "client":
		for _, a := range fs.Args() {
			n, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("not a number: %q", a)
			}
			c.ns = append(c.ns, n)
		}
		if len(c.ns) == 0 {
			c.ns = []int{30}
		}
		return client(ctx, c, stdout)
	case "server":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		return server(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be server or client, not %q", c.role)
	}
}

// fib is the n-th Fibonacci number, computed the slow way, as in the
// tutorial.
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

// server answers requests from c.queue, one at a time, acknowledging each
// request once its answer is published.
func server(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, err)
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := conn.Channel(ctx)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("opening a channel: %w", err))
	}
	if _, err := ch.QueueDeclare(ctx, c.queue, warren.QueueOptions{}); err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("declaring queue %q: %w", c.queue, err))
	}
	// One request at a time per server: start more servers to spread the
	// load.
	if err := ch.Qos(ctx, warren.QosOptions{PrefetchCount: 1}); err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("setting the prefetch: %w", err))
	}
	cons, err := ch.Consume(ctx, c.queue, warren.ConsumeOptions{})
	if err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("consuming from %q: %w", c.queue, err))
	}
	fmt.Fprintln(stdout, " [x] Awaiting RPC requests")
	for n := 0; c.count == 0 || n < c.count; n++ {
		d, ok, err := tutorial.Next(ctx, cons)
		if !ok {
			return err
		}
		if err := answer(ctx, ch, d, stdout); err != nil {
			return tutorial.IgnoreEnd(ctx, err)
		}
		if err := d.Ack(false); err != nil {
			return tutorial.IgnoreEnd(ctx, fmt.Errorf("acknowledging: %w", err))
		}
	}
	return nil
}

// answer computes the answer to request d and publishes it to d's reply_to
// address with d's correlation id. A request that is not a number from 0 to
// maxN gets an answer of type "error".
func answer(ctx context.Context, ch *warren.Channel, d warren.Delivery, stdout io.Writer) error {
	reply := proto.Properties{ContentType: "text/plain", CorrelationID: d.Properties.CorrelationID}
	var body string
	n, err := strconv.Atoi(string(d.Body))
	switch {
	case err != nil || n < 0 || n > maxN:
		fmt.Fprintf(stdout, " [!] bad request %q\n", d.Body)
		reply.Type = "error"
		body = fmt.Sprintf("n must be a whole number from 0 to %d, not %q", maxN, d.Body)
	default:
		fmt.Fprintf(stdout, " [.] fib(%d)\n", n)
		body = strconv.Itoa(fib(n))
	}
	if d.Properties.ReplyTo == "" {
		fmt.Fprintln(stdout, " [!] the request has no reply_to: answer dropped")
		return nil
	}
	// Through the default exchange, straight to the reply_to queue (or, for
	// direct reply-to, to the client's channel).
	err = ch.Publish(ctx, "", d.Properties.ReplyTo, warren.Publishing{Properties: reply, Body: []byte(body)})
	if err != nil {
		return fmt.Errorf("publishing the answer: %w", err)
	}
	return nil
}

// client asks the server for fib(n) of each of c.ns in turn and prints the
// answers.
func client(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := conn.Channel(ctx)
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	// Direct reply-to: consume the pseudo-queue, without acknowledgements,
	// on the channel that publishes the requests, before publishing.
	replies, err := ch.Consume(ctx, replyTo, warren.ConsumeOptions{NoAck: true})
	if err != nil {
		return fmt.Errorf("consuming %s: %w", replyTo, err)
	}
	returns := ch.NotifyReturn(make(chan warren.Return, 1))
	for _, n := range c.ns {
		fmt.Fprintf(stdout, " [x] Requesting fib(%d)\n", n)
		res, err := call(ctx, c, ch, replies, returns, n)
		if err != nil {
			return fmt.Errorf("fib(%d): %w", n, err)
		}
		fmt.Fprintf(stdout, " [.] Got %s\n", res)
	}
	return nil
}

// call publishes one request and waits, up to c.timeout, for the answer
// with its correlation id.
func call(ctx context.Context, c config, ch *warren.Channel, replies *warren.Consumer, returns <-chan warren.Return, n int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	corrID, err := newCorrelationID()
	if err != nil {
		return "", err
	}
	err = ch.Publish(ctx, "", c.queue, warren.Publishing{
		Mandatory: true, // come back if no queue takes it
		Properties: proto.Properties{
			ContentType:   "text/plain",
			CorrelationID: corrID,
			ReplyTo:       replyTo,
		},
		Body: []byte(strconv.Itoa(n)),
	})
	if err != nil {
		return "", fmt.Errorf("publishing the request: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no answer: %w", ctx.Err())
		case r, ok := <-returns:
			if !ok {
				return "", fmt.Errorf("the channel closed: %w", ch.Err())
			}
			if r.Properties.CorrelationID == corrID {
				return "", fmt.Errorf("no server: queue %q does not exist (the request came back: %d %s)", c.queue, r.ReplyCode, r.ReplyText)
			}
		case d, ok := <-replies.Deliveries():
			if !ok {
				return "", fmt.Errorf("the reply consumer ended: %w", tutorial.ConsumerErr(replies))
			}
			if d.Properties.CorrelationID != corrID {
				continue // an answer to an earlier request that timed out
			}
			if d.Properties.Type == "error" {
				return "", fmt.Errorf("the server says: %s", d.Body)
			}
			return string(d.Body), nil
		}
	}
}

// newCorrelationID returns a random correlation id.
func newCorrelationID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a correlation id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
