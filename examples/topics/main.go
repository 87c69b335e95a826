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
	"strings"
	"time"

	"github.com/warren-amqp/warren/examples/internal/tutorial"
)

func main() { tutorial.Main("topics", run) }

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
		// --key is the routing key.
		return c.logs().Emit(ctx, c.key, c.message, c.count, stdout)
	case "receive_logs_topic":
		c.bindings = fs.Args()
		if len(c.bindings) == 0 {
			return errors.New("receive_logs_topic needs binding keys: --role receive_logs_topic [binding_key]...")
		}
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		// One binding per binding key; a line that matches several comes once.
		return c.logs().Receive(ctx, c.bindings, c.count, stdout)
	default:
		return fmt.Errorf("--role must be emit_log_topic or receive_logs_topic, not %q", c.role)
	}
}

// logs is the topic exchange that both roles use.
func (c config) logs() tutorial.LogExchange {
	return tutorial.LogExchange{URL: c.url, Name: c.exchange, Kind: "topic", Mandatory: true}
}
