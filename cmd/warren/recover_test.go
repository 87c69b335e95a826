package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/internal/testenv"
)

// running is warren running in the background.
type running struct {
	stdout, stderr testenv.Buffer
	done           chan int // the exit code
}

// start runs warren in the background with the given stdin and arguments
// (the --url flags included), bounded by a minute.
func start(t *testing.T, stdin io.Reader, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	r := &running{done: make(chan int, 1)}
	go func() {
		defer cancel()
		r.done <- run(ctx, args, stdin, &r.stdout, &r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("warren did not stop")
		}
	})
	return r
}

// wait waits for warren to exit and returns its exit code.
func (r *running) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(90 * time.Second):
		t.Fatalf("warren did not exit; stderr: %s", r.stderr.String())
		return -1
	}
}

// eventually waits until cond holds (bounded), failing with what warren
// printed.
func (r *running) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("warren exited %d before %s; stdout: %q, stderr: %q", code, what, r.stdout.String(), r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stdout: %q, stderr: %q", what, r.stdout.String(), r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueCounts returns the messages ready in queue q and its consumers.
func queueCounts(t *testing.T, q string) (messages, consumers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := warren.DialWith(ctx, testURL(t), warren.DialOptions{Config: warren.Config{Recovery: warren.Recovery{Disabled: true}}})
	require.NoError(t, err)
	defer c.Close(ctx)
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	info, err := ch.QueueDeclare(ctx, q, warren.QueueOptions{Passive: true})
	require.NoError(t, err)
	return info.Messages, info.Consumers
}

// hasConsumer reports whether queue q has a consumer.
func hasConsumer(t *testing.T, q string) func() bool {
	return func() bool { _, n := queueCounts(t, q); return n == 1 }
}

// forceClose closes the broker connections whose name starts with prefix,
// as an operator would (320 CONNECTION_FORCED), and returns how many it
// closed.
func forceClose(t *testing.T, prefix string) int {
	t.Helper()
	expr := fmt.Sprintf(`length([rabbit_networking:close_connection(P, "closed by a warren test") || P <- rabbit_networking:connections(), `+
		`{client_properties, CP} <- rabbit_networking:connection_info(P, [client_properties]), `+
		`{<<"connection_name">>, longstr, N} <- [lists:keyfind(<<"connection_name">>, 1, CP)], `+
		`lists:prefix(%q, binary_to_list(N))]).`, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "eval", expr).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var n int
	_, err = fmt.Sscan(strings.TrimSpace(string(out)), &n)
	require.NoError(t, err, "%s", out)
	return n
}

// forceCloseOne closes the one connection named prefix…, waiting for it
// to be there (it may be recovering).
func forceCloseOne(t *testing.T, r *running, prefix string) {
	t.Helper()
	r.eventually(t, "connection "+prefix+" to close", func() bool { return forceClose(t, prefix) == 1 })
}

func TestConsumeRecoversFromForcedClose(t *testing.T) {
	q := declareQueue(t)
	name := uniqueName(t, "conn")
	cli(t, "", "publish", "--routing-key", q, "--count", "5", "--confirm", "before").ok(t)
	r := start(t, strings.NewReader(""), "consume", "--queue", q, "--count", "10", "--prefetch", "1",
		"--connection-name", name, "--url", testURL(t))
	r.eventually(t, "five messages", func() bool { return strings.Count(r.stdout.String(), "\tbefore\n") >= 5 })
	forceCloseOne(t, r, name)
	r.eventually(t, "the recovery", func() bool { return strings.Contains(r.stderr.String(), "recovered after") })
	cli(t, "", "publish", "--routing-key", q, "--count", "5", "--confirm", "after").ok(t)
	require.Equal(t, 0, r.wait(t), "stderr: %s", r.stderr.String())

	// Every message printed, at least once (one printed but not yet
	// acknowledged at the loss comes again).
	out := r.stdout.String()
	require.GreaterOrEqual(t, strings.Count(out, "\tbefore\n"), 5)
	require.Equal(t, 10-strings.Count(out, "\tbefore\n"), strings.Count(out, "\tafter\n"), out)
	stderr := r.stderr.String()
	require.Contains(t, stderr, "warren consume: "+name+": connection lost")
	require.Contains(t, stderr, "320 CONNECTION_FORCED")
	require.Contains(t, stderr, "warren consume: "+name+": recovered after")
}

func TestPublishRecoversFromForcedClose(t *testing.T) {
	q := declareQueue(t)
	name := uniqueName(t, "conn")
	stdin, feed := io.Pipe()
	defer feed.Close()
	r := start(t, stdin, "publish", "--lines", "--routing-key", q, "--confirm", "--connection-name", name, "--url", testURL(t))
	_, err := io.WriteString(feed, "one\ntwo\nthree\n")
	require.NoError(t, err)
	// Once the broker has the three, their acks are on the socket before
	// the close: the loss cuts off no confirmation.
	r.eventually(t, "three messages in the queue", func() bool { n, _ := queueCounts(t, q); return n == 3 })
	forceCloseOne(t, r, name)
	_, err = io.WriteString(feed, "four\nfive\n")
	require.NoError(t, err)
	require.NoError(t, feed.Close())
	require.Equal(t, 0, r.wait(t), "stderr: %s", r.stderr.String())
	require.Contains(t, r.stdout.String(), "published 5 message(s)")
	require.Contains(t, r.stdout.String(), "5 confirmed")
	require.Contains(t, r.stderr.String(), "recovered after")

	res := cli(t, "", "consume", "--queue", q, "--timeout", "500ms").ok(t)
	require.Equal(t, q+"\tone\n"+q+"\ttwo\n"+q+"\tthree\n"+q+"\tfour\n"+q+"\tfive\n", res.stdout)
}

func TestPerfRecoversFromForcedClose(t *testing.T) {
	name := uniqueName(t, "perf")
	r := start(t, strings.NewReader(""), "perf", "--duration", "6s", "--rate", "1000", "--json",
		"--connection-name", name, "--url", testURL(t))
	r.eventually(t, "a progress line", func() bool { return strings.Contains(r.stderr.String(), "time 1.0s") })
	// The control connection (it declared the queue), the consumer's and
	// the producer's, in one go.
	require.Equal(t, 3, forceClose(t, name+" "))
	require.Equal(t, 0, r.wait(t), "stderr: %s", r.stderr.String())
	var sum perfSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout.String()), &sum), r.stdout.String())
	require.True(t, sum.OK, "%+v", sum)
	require.Equal(t, 3, sum.Recoveries.Losses)
	require.Equal(t, 3, sum.Recoveries.Recovered)
	require.Positive(t, sum.Recoveries.Max)
	require.GreaterOrEqual(t, sum.Recoveries.Max, sum.Recoveries.P50)
	require.Zero(t, sum.Missing)
	require.Zero(t, sum.Duplicates, "redelivered duplicates are counted apart")
	require.Equal(t, sum.Confirmed, sum.Consumed)
	stderr := r.stderr.String()
	require.Contains(t, stderr, ", recoveries 3 (p50 ")
	require.Contains(t, stderr, "recovery   3 connection loss(es), 3 recovered")
}

// A connection lost again before anything was consumed since it recovered
// ends consume at once with the error, rather than loop.
func TestConsumeLostAgainWithoutProgressFails(t *testing.T) {
	q := declareQueue(t)
	name := uniqueName(t, "conn")
	r := start(t, strings.NewReader(""), "consume", "--queue", q, "--connection-name", name, "--url", testURL(t))
	r.eventually(t, "the consumer", hasConsumer(t, q))
	forceCloseOne(t, r, name)
	r.eventually(t, "the recovery", func() bool { return strings.Contains(r.stderr.String(), "recovered after") })
	forceCloseOne(t, r, name)
	require.Equal(t, exitFailure, r.wait(t))
	lines := strings.Split(strings.TrimSuffix(r.stderr.String(), "\n"), "\n")
	require.Contains(t, lines[len(lines)-1], "connection lost again before any progress since it recovered")
	require.Contains(t, lines[len(lines)-1], "320 CONNECTION_FORCED")
}

// proxy forwards 127.0.0.1:port to the broker until stopped; stopping it
// closes its listener and every connection through it, so that a
// recovery finds nothing listening.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(b, c); b.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) url() string { return "amqp://guest:guest@" + p.ln.Addr().String() + "/" }

func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// --recovery-timeout bounds the wait for a recovery: with the only address
// gone, consume ends with the last error once it passes; with a second
// address, it fails over instead.
func TestConsumeRecoveryTimeoutAndFailover(t *testing.T) {
	q := declareQueue(t)
	p := newProxy(t, brokerAddr())
	r := start(t, strings.NewReader(""), "consume", "--queue", q, "--recovery-timeout", "1s", "--url", p.url())
	r.eventually(t, "the consumer", hasConsumer(t, q))
	lost := time.Now()
	p.stop()
	require.Equal(t, exitFailure, r.wait(t))
	require.GreaterOrEqual(t, time.Since(lost), time.Second, "not before the timeout")
	lines := strings.Split(strings.TrimSuffix(r.stderr.String(), "\n"), "\n")
	require.Contains(t, lines[len(lines)-1], "the connection did not recover within 1s")
	require.Contains(t, lines[len(lines)-1], "connection refused")

	// The same with the broker's own address second: consume fails over.
	p = newProxy(t, brokerAddr())
	r = start(t, strings.NewReader(""), "consume", "--queue", q, "--count", "1", "--recovery-timeout", "30s", "--url", p.url(), "--url", testURL(t))
	r.eventually(t, "the consumer", hasConsumer(t, q))
	p.stop()
	r.eventually(t, "the recovery", func() bool { return strings.Contains(r.stderr.String(), "recovered after") })
	cli(t, "", "publish", "--routing-key", q, "--confirm", "failed over").ok(t)
	require.Equal(t, 0, r.wait(t), "stderr: %s", r.stderr.String())
	require.Equal(t, q+"\tfailed over\n", r.stdout.String())
}

// A one-shot subcommand given several addresses uses the first that
// answers; it does not recover.
func TestURLRepeated(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "amqp://guest:guest@" + dead.Addr().String() + "/"
	require.NoError(t, dead.Close()) // nothing listens there now
	q := uniqueName(t, "q")
	r := cliNoURL(t, "", "declare", "queue", q, "--url", deadURL, "--url", testURL(t)).ok(t)
	require.Equal(t, q+"\n", r.stdout)
	cli(t, "", "delete", "queue", q).ok(t)

	r = cliNoURL(t, "", "declare", "queue", q, "--url", deadURL)
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, oneLine(t, r.stderr), "connection refused")
}

// What the library only logs, the command says on stderr: here a message
// skipped for exceeding --max-message-size.
func TestConsumeReportsSkippedMessages(t *testing.T) {
	q := declareQueue(t)
	cli(t, strings.Repeat("x", 2000), "publish", "--routing-key", q, "--confirm").ok(t)
	cli(t, "", "publish", "--routing-key", q, "--confirm", "small").ok(t)
	r := cli(t, "", "consume", "--queue", q, "--count", "1", "--max-message-size", "1000", "--timeout", "5s")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	require.Equal(t, q+"\tsmall\n", r.stdout)
	line := oneLine(t, r.stderr)
	require.Contains(t, line, "warren consume: message over MaxMessageSize skipped")
	require.Contains(t, line, "size=2000")
}
