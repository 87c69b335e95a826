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
	"strings"
	"time"

	"github.com/warren-amqp/warren/examples/internal/tutorial"
)

func main() { tutorial.Main("publish-subscribe", run) }

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
// emit_log returns once its lines are confirmed; receive_logs after --count
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
		// A fanout exchange ignores the routing key.
		return c.logs().Emit(ctx, "", c.message, c.count, stdout)
	case "receive_logs":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		// One binding, with no key: the queue gets every line.
		return c.logs().Receive(ctx, nil, c.count, stdout)
	default:
		return fmt.Errorf("--role must be emit_log or receive_logs, not %q", c.role)
	}
}

// logs is the fanout exchange that both roles use. Not mandatory: a line
// that no receiver is bound for goes nowhere, and that is fine for logs.
func (c config) logs() tutorial.LogExchange {
	return tutorial.LogExchange{URL: c.url, Name: c.exchange, Kind: "fanout"}
}
