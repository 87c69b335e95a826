// Package extest is what the tests of the example programs under examples/
// share: the broker they run against, the TestMain that skips them without
// one, unique names for what they declare (deleted when the test ends),
// and a way to run a program's run function in the background while
// watching what it prints.
package extest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/internal/testenv"
)

// URL is the broker the tests use: $AMQP_URL or the local RabbitMQ.
func URL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// addr is URL's host:port.
func addr() string {
	u, err := warren.ParseURI(URL())
	if err != nil {
		return "127.0.0.1:5672"
	}
	return u.Addr()
}

// Main is a test binary's TestMain: without a broker the tests named
// TestBroker… skip (after one line saying so; WARREN_REQUIRE_BROKER=1 makes
// that a failure), and every test must leave no goroutine behind.
func Main(m *testing.M, pkg string) {
	testenv.SkipWithoutBroker(pkg, addr(), "^TestBroker")
	goleak.VerifyTestMain(m)
}

// Name returns a name for a queue or exchange that no other test, and no
// other run of this one, uses.
func Name(t testing.TB, what string) string {
	t.Helper()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("warren.examples.%s.%s.%d", name, what, time.Now().UnixNano())
}

// DeleteQueues deletes the named queues when the test ends, through a
// connection of its own. Deleting a queue that does not exist succeeds.
func DeleteQueues(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		cleanup(t, func(ctx context.Context, ch *warren.Channel) error {
			for _, n := range names {
				if _, err := ch.QueueDelete(ctx, n, warren.QueueDeleteOptions{}); err != nil {
					return fmt.Errorf("deleting queue %q: %w", n, err)
				}
			}
			return nil
		})
	})
}

// DeleteExchanges deletes the named exchanges when the test ends, through
// a connection of its own.
func DeleteExchanges(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		cleanup(t, func(ctx context.Context, ch *warren.Channel) error {
			for _, n := range names {
				if err := ch.ExchangeDelete(ctx, n, warren.ExchangeDeleteOptions{}); err != nil {
					return fmt.Errorf("deleting exchange %q: %w", n, err)
				}
			}
			return nil
		})
	})
}

func cleanup(t testing.TB, fn func(context.Context, *warren.Channel) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := warren.DialWith(ctx, URL(), warren.DialOptions{Config: warren.Config{
		ConnectionName: "warren-examples-cleanup",
		Recovery:       warren.Recovery{Disabled: true},
	}})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Errorf("cleanup: closing: %v", err)
		}
	}()
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	if err := fn(ctx, ch); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// Queue declares a queue passively through a connection of its own and
// returns the broker's answer (its message count, say).
func Queue(t testing.TB, name string) warren.Queue {
	t.Helper()
	var q warren.Queue
	cleanup(t, func(ctx context.Context, ch *warren.Channel) error {
		var err error
		q, err = ch.QueueDeclare(ctx, name, warren.QueueOptions{Passive: true})
		return err
	})
	return q
}

// Program is a run of a program's run function in the background.
type Program struct {
	// Out is what the program printed so far.
	Out    *testenv.Buffer
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// Start runs run(ctx, args, out) on a goroutine of its own, with a context
// that ends when Stop is called or the test ends. The test waits for it to
// return before it ends.
func Start(t testing.TB, run func(context.Context, []string, io.Writer) error, args ...string) *Program {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &Program{Out: new(testenv.Buffer), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(p.done)
		p.err = run(ctx, args, p.Out)
	}()
	t.Cleanup(func() {
		p.cancel()
		<-p.done
	})
	return p
}

// Stop ends the program's context (as Ctrl-C would) and returns what it
// returned.
func (p *Program) Stop() error {
	p.cancel()
	<-p.done
	return p.err
}

// Wait waits up to timeout for the program to return by itself, and
// returns its error (or a timeout error, leaving it running).
func (p *Program) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v; output so far:\n%s", timeout, p.Out.String())
	}
}

// WaitFor waits up to timeout until the program has printed substr n times
// (or returned), and fails the test if it did not.
func (p *Program) WaitFor(t testing.TB, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.Out.String(), substr) < n {
		select {
		case <-p.done:
			t.Fatalf("program returned (%v) before printing %q %d time(s); output:\n%s", p.err, substr, n, p.Out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("program did not print %q %d time(s) within %v; output:\n%s", substr, n, timeout, p.Out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run runs run(ctx, args, out) to its end, bounded by a minute, and returns
// what it printed and returned.
func Run(run func(context.Context, []string, io.Writer) error, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out testenv.Buffer
	err := run(ctx, args, &out)
	return out.String(), err
}
