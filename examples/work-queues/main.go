// Command work-queues is RabbitMQ tutorial two ("Work Queues") with Warren:
// new_task puts tasks on a durable queue as persistent messages, and any
// number of workers share them out, one task at a time each (prefetch 1),
// acknowledging a task only when it is done, so that a worker that dies
// mid-task hands its task to another worker instead of losing it.
//
//	go run ./examples/work-queues --role worker
//	go run ./examples/work-queues --role new_task First message.
//	go run ./examples/work-queues --role new_task --count 5 A task...
//
// As in the tutorial, a task takes one second of work per dot in its body
// (--dot changes that).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/tutorial"
	"github.com/warren-amqp/warren/proto"
)

func main() { tutorial.Main("work-queues", run) }

// config holds the command line.
type config struct {
	url      string
	role     string
	queue    string
	count    int
	duration time.Duration
	timeout  time.Duration
	dot      time.Duration
	message  string
}

// run parses args and plays the role they name, printing to stdout: new_task
// returns once its tasks are published; a worker when it has done --count
// tasks, when --duration has passed, or when ctx ends (Ctrl-C), returning nil
// for those, and leaving a task it had not finished to the broker to hand
// out again.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("work-queues", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.role, "role", "", "new_task or worker")
	fs.StringVar(&c.queue, "queue", "task_queue", "the durable task queue")
	fs.IntVar(&c.count, "count", 0, "new_task: tasks to send, numbered when more than one (default 1); worker: stop after this many (0: no limit)")
	fs.DurationVar(&c.duration, "duration", 0, "worker: stop after this long (0: until interrupted or --count)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "new_task: give up after this long")
	fs.DurationVar(&c.dot, "dot", time.Second, "worker: how long each dot of a task takes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.count < 0 {
		return errors.New("--count must not be negative")
	}
	switch c.role {
	case "new_task":
		c.message = strings.Join(fs.Args(), " ")
		if c.message == "" {
			c.message = "Hello World!"
		}
		if c.count == 0 {
			c.count = 1
		}
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return newTask(ctx, c, stdout)
	case "worker":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		return worker(ctx, c, stdout)
	default:
		return fmt.Errorf("--role must be new_task or worker, not %q", c.role)
	}
}

// declare opens a channel and declares the durable task queue, as both
// roles do: it survives a broker restart, and so do the persistent
// messages on it.
func declare(ctx context.Context, conn *warren.Connection, queue string) (*warren.Channel, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening a channel: %w", err)
	}
	if _, err := ch.QueueDeclare(ctx, queue, warren.QueueOptions{Durable: true}); err != nil {
		return nil, fmt.Errorf("declaring queue %q: %w", queue, err)
	}
	return ch, nil
}

// newTask publishes c.count persistent tasks.
func newTask(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.queue)
	if err != nil {
		return err
	}
	for i := 1; i <= c.count; i++ {
		body := c.message
		if c.count > 1 {
			body = fmt.Sprintf("%s #%d", c.message, i)
		}
		err := ch.Publish(ctx, "", c.queue, warren.Publishing{
			Properties: proto.Properties{ContentType: "text/plain", DeliveryMode: proto.Persistent},
			Body:       []byte(body),
		})
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		fmt.Fprintf(stdout, " [x] Sent %s\n", body)
	}
	return nil
}

// worker takes tasks one at a time, works on each (c.dot per dot in its
// body) and acknowledges it when done.
func worker(ctx context.Context, c config, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, err)
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	ch, err := declare(ctx, conn, c.queue)
	if err != nil {
		return tutorial.IgnoreEnd(ctx, err)
	}
	// Fair dispatch: no new task for this worker until it has acknowledged
	// the one it has.
	if err := ch.Qos(ctx, warren.QosOptions{PrefetchCount: 1}); err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("setting the prefetch: %w", err))
	}
	cons, err := ch.Consume(ctx, c.queue, warren.ConsumeOptions{})
	if err != nil {
		return tutorial.IgnoreEnd(ctx, fmt.Errorf("consuming from %q: %w", c.queue, err))
	}
	fmt.Fprintln(stdout, " [*] Waiting for messages. To exit press CTRL+C")
	for n := 0; c.count == 0 || n < c.count; n++ {
		d, ok, err := tutorial.Next(ctx, cons)
		if !ok {
			return err
		}
		fmt.Fprintf(stdout, " [x] Received %s\n", d.Body)
		work := time.NewTimer(time.Duration(strings.Count(string(d.Body), ".")) * c.dot)
		select {
		case <-ctx.Done():
			work.Stop()
			// Not acknowledged: the broker gives the task to another
			// worker once this connection closes.
			fmt.Fprintf(stdout, " [!] Interrupted: %s goes back to the queue\n", d.Body)
			return nil
		case <-work.C:
		}
		fmt.Fprintln(stdout, " [x] Done")
		if err := d.Ack(false); err != nil {
			return fmt.Errorf("acknowledging: %w", err)
		}
	}
	return nil
}
