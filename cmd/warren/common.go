package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// defaultURL is used when neither --url nor $AMQP_URL is set.
const defaultURL = "amqp://guest:guest@localhost:5672/"

const (
	defaultConnectTimeout = 15 * time.Second
	closeTimeout          = 5 * time.Second
)

// exitError is an error with its exit code. A silent one has already been
// reported.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a wrong command line (exit code 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// errHelpShown says --help was asked for and the usage was printed.
var errHelpShown = errors.New("help shown")

// errLine formats err as the one line printed on stderr: prefixed with
// the subcommand, without line breaks and without the password.
func (e *env) errLine(err error) string {
	msg := err.Error()
	if errors.Is(err, context.Canceled) && e.ctx.Err() != nil {
		msg = "interrupted"
	}
	msg = strings.Join(strings.Fields(e.scrub(msg)), " ")
	return "warren " + e.name + ": " + msg
}

// scrub replaces the passwords of the URLs in use in msg by xxxxx.
func (e *env) scrub(msg string) string {
	for _, pw := range e.passwords {
		if len(pw) >= 4 && pw != "guest" { // guest is no secret
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// cmdFlags is a subcommand's flag set and its help text.
type cmdFlags struct {
	*flag.FlagSet
	e        *env
	synopsis string // "warren publish [flags] [BODY]"
	about    string // paragraphs after the synopsis
	urls     stringList
	connName *string
}

func newFlags(e *env, synopsis, about string) *cmdFlags {
	fs := flag.NewFlagSet("warren "+e.name, flag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.Usage = func() {}
	f := &cmdFlags{FlagSet: fs, e: e, synopsis: synopsis, about: about}
	f.connName = fs.String("connection-name", "", "connection `name` the broker shows (default \"warren SUBCOMMAND\")")
	fs.DurationVar(&e.connectTimeout, "connect-timeout", defaultConnectTimeout, "how long to wait for each connection: the dial and the AMQP handshake")
	fs.DurationVar(&e.rpcTimeout, "rpc-timeout", 30*time.Second, "how long to wait for the broker to answer each request (channel.open, queue.declare, …),\nto take each publish, and to close the connection")
	fs.BoolVar(&e.trace, "trace", false, "print every AMQP frame sent and received on stderr, one line each:\n\"warren SUBCOMMAND: trace -> ch N METHOD {fields}\" (-> sent, <- received; credentials redacted)")
	fs.Var(&f.urls, "url", "broker `URI` (default: $AMQP_URL, else "+defaultURL+");\nrepeat it for a cluster's nodes: tried in order, and again on every recovery")
	return f
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// parse parses args, letting flags and positional arguments interleave
// (the flag package alone stops at the first positional argument). "--"
// ends the flags. It prints the usage on stdout for --help and returns
// errHelpShown.
func (f *cmdFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printUsage()
				return nil, errHelpShown
			}
			return nil, usageErrorf("%v (see 'warren %s --help')", err, f.e.name)
		}
		if f.e.rpcTimeout <= 0 {
			return nil, usageErrorf("--rpc-timeout must be positive")
		}
		if f.e.connectTimeout <= 0 {
			return nil, usageErrorf("--connect-timeout must be positive")
		}
		rest := f.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (f *cmdFlags) printUsage() {
	w := f.e.stdout
	fmt.Fprintf(w, "Usage: %s\n", f.synopsis)
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.Trim(f.about, "\n"))
	}
	fmt.Fprintln(w, "\nFlags:")
	f.VisitAll(func(fl *flag.Flag) {
		name, usage := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		def := ""
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" && fl.DefValue != "[]" && fl.DefValue != "0s" {
			def = " (default " + fl.DefValue + ")"
		}
		fmt.Fprintf(w, "    \t%s%s\n", strings.ReplaceAll(usage, "\n", "\n    \t"), def)
	})
}

// wasSet reports whether the named flag was given on the command line.
func (f *cmdFlags) wasSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			set = true
		}
	})
	return set
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// brokerURLs returns the URLs to use: every --url, else $AMQP_URL, else
// the default. It remembers their passwords so that errors never show
// them.
func (f *cmdFlags) brokerURLs() ([]string, error) {
	urls := []string(f.urls)
	if len(urls) == 0 {
		u := os.Getenv("AMQP_URL")
		if u == "" {
			u = defaultURL
		}
		urls = []string{u}
	}
	for _, u := range urls {
		parsed, err := warren.ParseURI(u)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: err}
		}
		f.e.passwords = append(f.e.passwords, parsed.Password)
	}
	return urls, nil
}

// dial connects to the first broker of the flags' URLs that answers. The
// connection recovers when the subcommand has a recovery watch (consume,
// publish, perf); the others fail at once when their connection is lost.
func (f *cmdFlags) dial(cfg warren.Config) (*warren.Connection, error) {
	return f.dialAs("", cfg)
}

// dialAs is dial for one of several connections of a subcommand (perf's
// "producer 0"): role is added to the connection name and to --trace's
// lines.
func (f *cmdFlags) dialAs(role string, cfg warren.Config) (*warren.Connection, error) {
	urls, err := f.brokerURLs()
	if err != nil {
		return nil, err
	}
	cfg.ConnectionName = f.connectionName()
	if role != "" {
		cfg.ConnectionName += " " + role
	}
	if f.e.trace {
		cfg.Trace = f.e.traceFunc(role)
	}
	cfg.Recovery = f.e.watch.config()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(stderrLog{f.e})
	}
	ctx, done := f.e.rpcWithin("the connection handshake", f.e.connectTimeout)
	conn, err := warren.DialAny(ctx, urls, warren.DialOptions{Config: cfg})
	if err = done(err); err != nil {
		return nil, err
	}
	if f.e.watch != nil {
		f.e.watch.watch(cfg.ConnectionName, conn)
	}
	return conn, nil
}

// openChannel opens a channel on conn, bounded by --rpc-timeout.
func (e *env) openChannel(conn *warren.Connection) (*warren.Channel, error) {
	ctx, done := e.rpc("channel.open")
	ch, err := conn.Channel(ctx)
	return ch, done(err)
}

// connectionName is --connection-name, else "warren SUBCOMMAND".
func (f *cmdFlags) connectionName() string {
	if *f.connName != "" {
		return *f.connName
	}
	return "warren " + f.e.name
}

// dialChannel connects and opens one channel.
func (f *cmdFlags) dialChannel() (*warren.Connection, *warren.Channel, error) {
	conn, err := f.dial(warren.Config{})
	if err != nil {
		return nil, nil, err
	}
	ch, err := f.e.openChannel(conn)
	if err != nil {
		f.e.closeConn(conn)
		return nil, nil, err
	}
	return conn, ch, nil
}

// closeConn closes conn cleanly, bounded in time (closeTimeout, or
// --rpc-timeout when shorter) even after an interrupt.
//
// A close the broker does not finish in that time (no close-ok) is
// remembered: the command then exits 1 with a line saying so, after
// doing its work.
func (e *env) closeConn(conn *warren.Connection) {
	d := e.closeWait()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := conn.Close(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, warren.ErrCloseTimeout) {
		e.closeMu.Lock()
		if e.closeErr == nil {
			e.closeErr = fmt.Errorf("no answer from the broker to connection.close within %s", d)
		}
		e.closeMu.Unlock()
	}
}

// closeWait bounds the close handshake.
func (e *env) closeWait() time.Duration {
	if e.rpcTimeout > 0 {
		return min(closeTimeout, e.rpcTimeout)
	}
	return closeTimeout
}

// rpc bounds one broker round trip, what (say "queue.declare"), by
// --rpc-timeout: it returns the context for the call and a function that
// ends it and turns a timeout into one clear error naming what was not
// answered.
func (e *env) rpc(what string) (context.Context, func(error) error) {
	return e.rpcWithin(what, e.rpcTimeout)
}

// rpcWithin is rpc with its own bound d.
func (e *env) rpcWithin(what string, d time.Duration) (context.Context, func(error) error) {
	ctx, cancel := context.WithTimeout(e.ctx, d)
	return ctx, func(err error) error {
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && e.ctx.Err() == nil
		cancel()
		// The core's handshake timer is set from the same deadline, and
		// may fire a hair before the context ends.
		handshake := errors.Is(err, warren.ErrHandshakeTimeout) && e.ctx.Err() == nil
		if err != nil && (timedOut && errors.Is(err, context.DeadlineExceeded) || handshake) {
			if why := e.watch.recoveringWhy(); why != nil {
				return fmt.Errorf("no answer from the broker to %s within %s: the connection is recovering (%w)", what, d, why)
			}
			return fmt.Errorf("no answer from the broker to %s within %s", what, d)
		}
		return err
	}
}

// parseArgs turns "--arg name=value" flags into a field table: integers
// become signed 64-bit ('l'), true and false booleans ('t'), anything else
// a string ('S').
func parseArgs(kvs []string, flagName string) (proto.Table, error) {
	var t proto.Table
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--%s %q: want name=value", flagName, kv)
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			t.Set(k, proto.Int64(n))
		} else if v == "true" || v == "false" {
			t.Set(k, proto.Bool(v == "true"))
		} else {
			t.Set(k, proto.String(v))
		}
	}
	return t, nil
}

// mergeTables sets every field of add in t (replacing fields of the same
// name) and returns t.
func mergeTables(t, add proto.Table) proto.Table {
	for _, f := range add {
		t.Set(f.Name, f.Value)
	}
	return t
}

// argsFlags adds --arg and --args-json to f and returns a function that
// builds the arguments table from them.
func (f *cmdFlags) argsFlags(what string) func() (proto.Table, error) {
	var kvs stringList
	f.Var(&kvs, "arg", "a "+what+" argument, `name=value` (repeatable); integers become signed 64-bit,\ntrue/false booleans, anything else strings")
	js := f.String("args-json", "", "`JSON` object of "+what+" arguments (see the field-value mapping in the README);\n--arg values override it")
	return func() (proto.Table, error) {
		var t proto.Table
		if *js != "" {
			var err error
			if t, err = parseTableJSON(*js); err != nil {
				return nil, usageErrorf("--args-json: %v", err)
			}
		}
		a, err := parseArgs(kvs, "arg")
		if err != nil {
			return nil, err
		}
		return mergeTables(t, a), nil
	}
}

// parseFlagsOnly parses args for a subcommand that takes no positional
// arguments, then checks that each flag in required was given a value.
func (f *cmdFlags) parseFlagsOnly(args []string, required ...string) error {
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (see 'warren %s --help')", pos[0], f.e.name)
	}
	for _, name := range required {
		if fl := f.Lookup(name); fl == nil || fl.Value.String() == "" {
			return usageErrorf("--%s is required", name)
		}
	}
	return nil
}
