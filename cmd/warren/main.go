// Command warren is a command-line AMQP 0-9-1 client built on the warren
// library: publish, consume and get messages, declare, bind, unbind, delete
// and purge queues and exchanges, and load-test a broker with perf.
//
// Run "warren help" for the list of subcommands and "warren SUBCOMMAND
// --help" for the flags of each. Every subcommand takes --url (default
// $AMQP_URL, else amqp://guest:guest@localhost:5672/).
//
// Exit codes: 0 success, 1 failure (broker or network error, a nacked,
// returned or unconfirmed publish, a failed perf verification), 2 usage
// error, 3 "get" found the queue empty. Errors are printed as one line on
// stderr, with any URI redacted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitEmpty   = 3
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"publish", "publish messages", runPublish},
		{"consume", "consume messages from a queue and print them", runConsume},
		{"get", "fetch one message from a queue (basic.get)", runGet},
		{"declare", "declare a queue or an exchange", runDeclare},
		{"bind", "bind a queue or an exchange to an exchange", runBind},
		{"unbind", "remove a queue or exchange binding", runUnbind},
		{"delete", "delete a queue or an exchange", runDelete},
		{"purge", "remove every ready message from a queue", runPurge},
		{"perf", "load-test the broker (like RabbitMQ PerfTest)", runPerf},
	}
}

// env is what a subcommand runs with.
type env struct {
	ctx    context.Context
	name   string // subcommand name
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// passwords are the passwords of the URLs in use, scrubbed from errors.
	passwords []string
	// rpcTimeout bounds each broker round trip (--rpc-timeout).
	rpcTimeout time.Duration
	// connectTimeout bounds each dial and handshake (--connect-timeout).
	connectTimeout time.Duration
	// trace prints every frame on stderr (--trace).
	trace bool
	// watch follows the recovery of the connections of consume, publish
	// and perf; nil for the other subcommands.
	watch *recoveryWatch

	closeMu  sync.Mutex
	closeErr error // the first close handshake that failed (closeConn)
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "warren: missing subcommand (run 'warren help' for the list)")
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" {
			if c := lookup(args[1]); c != nil {
				return runCommand(ctx, c, []string{"--help"}, stdin, stdout, stderr)
			}
			fmt.Fprintf(stderr, "warren: unknown subcommand %q (run 'warren help' for the list)\n", args[1])
			return exitUsage
		}
		printMainUsage(stdout)
		return exitOK
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "warren: unknown subcommand %q (run 'warren help' for the list)\n", name)
		return exitUsage
	}
	return runCommand(ctx, c, args[1:], stdin, stdout, stderr)
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func runCommand(ctx context.Context, c *command, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	e := &env{ctx: ctx, name: c.name, stdin: stdin, stdout: stdout, stderr: &lockedWriter{w: stderr}}
	defer func() {
		// Never a stack trace: a bug becomes one line and exit code 1.
		if r := recover(); r != nil {
			fmt.Fprintln(e.stderr, e.errLine(fmt.Errorf("internal error: %v", r)))
			code = exitFailure
		}
	}()
	err := c.run(e, args)
	if err == nil {
		// The work is done, but a close the broker never finished is
		// still a failure to report.
		e.closeMu.Lock()
		err = e.closeErr
		e.closeMu.Unlock()
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	var xe *exitError
	if errors.As(err, &xe) && xe.silent {
		return xe.code
	}
	fmt.Fprintln(e.stderr, e.errLine(err))
	if errors.As(err, &xe) {
		return xe.code
	}
	return exitFailure
}

// lockedWriter serialises the writes of a subcommand's goroutines (perf's
// progress lines, the recovery notes) so that lines never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `warren: a command-line AMQP 0-9-1 client

Usage:
  warren SUBCOMMAND [flags] [arguments]
  warren help SUBCOMMAND

Subcommands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every subcommand takes --url (default: $AMQP_URL, else `+defaultURL+`)
and --help. --url may be repeated (a cluster's nodes): consume, publish and
perf recover from a lost connection, redialling the addresses in turn for up
to --recovery-timeout; the other subcommands fail at once. --rpc-timeout
(default 30s) bounds every request to the broker, each publish and the close.
--trace prints every AMQP frame sent and received on stderr, one line each
("warren SUBCOMMAND: trace -> ch N METHOD {fields}"; credentials redacted).
Flags may come before or after the positional arguments; "--" ends the flags.

Exit codes: 0 success, 1 failure, 2 usage error, 3 queue empty (get).
`)
}
