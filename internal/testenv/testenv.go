// Package testenv holds what the test binaries share about their
// environment. For those that need a RabbitMQ it decides what happens
// when none is running: the tests that need it skip, after
// one line saying how to start one, or, when WARREN_REQUIRE_BROKER=1
// (.ci/run sets it), the test binary fails at once.
//
// The line goes to the terminal (/dev/tty) when there is one: go test in
// package-list mode (go test ./...) shows a passing package's output only
// with -v, and the line must be seen without it. Without a terminal it
// goes to stderr.
package testenv

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// RequireEnv is the environment variable that makes a missing broker a
// failure.
const RequireEnv = "WARREN_REQUIRE_BROKER"

// Available reports whether something accepts TCP connections at addr
// within a second.
func Available(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Check runs in a TestMain: it reports whether the broker at addr is
// there. When it is not, it prints one line on stderr naming the package
// pkg and how to start RabbitMQ, and returns false so that the broker
// tests skip; under WARREN_REQUIRE_BROKER=1 it exits with status 1
// instead.
func Check(pkg, addr string) bool {
	if Available(addr) {
		return true
	}
	if os.Getenv(RequireEnv) == "1" {
		fmt.Fprintf(os.Stderr, "%s: no RabbitMQ at %s and %s=1: failing (start one: rabbitmq-server -detached && rabbitmqctl await_startup)\n",
			pkg, addr, RequireEnv)
		os.Exit(1)
	}
	Say(fmt.Sprintf("%s: no RabbitMQ at %s: skipping the tests that need it (start one: rabbitmq-server -detached && rabbitmqctl await_startup)",
		pkg, addr))
	return false
}

// Say prints line where someone running go test sees it without -v: the
// terminal if there is one, else stderr.
func Say(line string) {
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(tty, line)
		tty.Close()
		return
	}
	fmt.Fprintln(os.Stderr, line)
}

// CaptureStdout runs fn with os.Stdout going to a pipe and returns what
// it wrote: for tests that check what an example prints. Not for
// parallel tests (os.Stdout is the process's).
func CaptureStdout(fn func()) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	saved := os.Stdout
	os.Stdout = w
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	defer func() { os.Stdout = saved }()
	fn()
	os.Stdout = saved
	if err := w.Close(); err != nil {
		return "", err
	}
	out := <-got
	return string(out), r.Close()
}

// SkipWithoutBroker runs in a TestMain: when no broker answers at addr
// (see Check), the tests matching pattern are skipped (added to -skip),
// after the one line Check prints.
func SkipWithoutBroker(pkg, addr, pattern string) {
	if Check(pkg, addr) {
		return
	}
	flag.Parse()
	if s := flag.Lookup("test.skip").Value.String(); s != "" {
		pattern += "|" + s
	}
	_ = flag.Set("test.skip", pattern)
}

// Buffer is a bytes.Buffer that a test and the goroutines writing to it
// (a logger, a command's output, a proxy) may share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
