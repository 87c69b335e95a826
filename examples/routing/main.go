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
	"strings"
	"time"

	"github.com/warren-amqp/warren/examples/internal/tutorial"
)

func main() { tutorial.Main("routing", run) }

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
		// The severity is the routing key.
		return c.logs().Emit(ctx, c.severity, c.message, c.count, stdout)
	case "receive_logs_direct":
		c.severities = fs.Args()
		if len(c.severities) == 0 {
			return errors.New("receive_logs_direct needs severities: --role receive_logs_direct [info] [warning] [error]")
		}
		ctx, cancel := tutorial.WithDuration(ctx, c.duration)
		defer cancel()
		// One binding per severity.
		return c.logs().Receive(ctx, c.severities, c.count, stdout)
	default:
		return fmt.Errorf("--role must be emit_log_direct or receive_logs_direct, not %q", c.role)
	}
}

// logs is the direct exchange that both roles use.
func (c config) logs() tutorial.LogExchange {
	return tutorial.LogExchange{URL: c.url, Name: c.exchange, Kind: "direct", Mandatory: true}
}
