package main

// The idle-footprint case (rabbitmq/idle-footprint): what an open, idle
// connection costs each client in memory and goroutines.
//
// Each client's run happens in a child process of its own (this binary,
// re-executed with idleEnv set, like the scripted broker), so that nothing
// an earlier run left behind (the other client's goroutines, caches, heap
// growth) is counted. The child:
//
//  1. runs runtime.GC twice and takes a baseline: HeapInuse, StackInuse
//     and runtime.NumGoroutine;
//  2. opens caseDef.N connections to RabbitMQ over plain TCP, one after
//     the other, each with one channel open, one close listener and one
//     blocked listener registered (openIdle);
//  3. leaves them idle for idleSettle;
//  4. runs runtime.GC twice and measures again: bytes per connection are
//     ((HeapInuse + StackInuse) - baseline) / N, goroutines per
//     connection (NumGoroutine - baseline) / N;
//  5. closes every connection and prints its figures as one
//     "IDLE {json}" line on stdout.
//
// The parent (runIdle) collects the figures into runResult.Idle; the
// medians over rounds go in their own table below the main one (and in
// the JSON report under "idle").

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/warren-amqp/warren"
)

const (
	kindIdle        = "idle-footprint"            // case kind and the last part of its id
	idleEnv         = "WARREN_COMPARE_IDLE_CHILD" // set (to a JSON idleRequest) in the child
	idleConns       = 300                         // connections per run
	idleConnsQuick  = 20                          // connections per run with -quick
	idleSettle      = 2 * time.Second             // idle time before measuring
	idleCloseWait   = time.Minute                 // bound on closing every connection
	idleResultTag   = "IDLE "                     // prefix of the child's result line
	idleMaxBytes    = 12 << 10                    // target: Warren's bytes per idle connection
	idleMaxRoutines = 2                           // target: Warren's goroutines per idle connection
)

// idleCase is the case's row; n is the number of connections.
func idleCase(quick bool) caseDef {
	n := idleConns
	if quick {
		n = idleConnsQuick
	}
	return caseDef{ID: brokerRabbit + "/" + kindIdle, Broker: brokerRabbit, Kind: kindIdle, N: n}
}

// idleTarget is the case's goal: absolute limits on Warren's figures, and
// Warren's bytes per connection below amqp091-go's.
func idleTarget() target {
	return target{MaxIdleBytesPerConn: idleMaxBytes, MaxIdleGoroutinesPerConn: idleMaxRoutines, IdleBytesBelowAMQP091: true}
}

// idleRequest is what the parent asks of the child.
type idleRequest struct {
	Client string        `json:"client"`
	URL    string        `json:"url"`
	Conns  int           `json:"conns"`
	Settle time.Duration `json:"settle_ns"`
}

// idleFigures is one client's measurement in one round.
type idleFigures struct {
	Conns             int     `json:"conns"`
	BytesPerConn      float64 `json:"bytes_per_conn"`      // (HeapInuse + StackInuse) over the baseline, ÷ conns
	GoroutinesPerConn float64 `json:"goroutines_per_conn"` // NumGoroutine over the baseline, ÷ conns
	HeapInuseDelta    int64   `json:"heap_inuse_delta"`
	StackInuseDelta   int64   `json:"stack_inuse_delta"`
	GoroutinesDelta   int     `json:"goroutines_delta"`
	OpenSeconds       float64 `json:"open_seconds"` // opening every connection, one after the other
}

// idleSummary holds the medians over rounds of one client's figures.
type idleSummary struct {
	BytesPerConn      float64 `json:"bytes_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	MinBytesPerConn   float64 `json:"min_bytes_per_conn"`
	MaxBytesPerConn   float64 `json:"max_bytes_per_conn"`
}

// idleConn is one open connection and everything registered on it. The
// harness keeps them in a slice allocated before the baseline, so that it
// adds nothing per connection to what is measured.
type idleConn struct {
	w        *warren.Connection
	wCh      *warren.Channel
	wClosed  chan error
	wBlocked chan warren.Blocking

	a        *amqp.Connection
	aCh      *amqp.Channel
	aClosed  chan *amqp.Error
	aBlocked chan amqp.Blocking
}

// openIdle opens one connection of the named client with one channel, a
// close listener and a blocked listener.
func openIdle(ctx context.Context, client, url string) (idleConn, error) {
	switch client {
	case clientWarren:
		conn, err := warren.Dial(ctx, url)
		if err != nil {
			return idleConn{}, err
		}
		ch, err := conn.Channel(ctx)
		if err != nil {
			conn.Close(ctx)
			return idleConn{}, err
		}
		c := idleConn{w: conn, wCh: ch}
		c.wClosed = conn.NotifyClose(make(chan error, 1))
		c.wBlocked = conn.NotifyBlocked(make(chan warren.Blocking, 1))
		return c, nil
	case clientAMQP091:
		conn, err := amqp.Dial(url)
		if err != nil {
			return idleConn{}, err
		}
		ch, err := conn.Channel()
		if err != nil {
			conn.Close()
			return idleConn{}, err
		}
		c := idleConn{a: conn, aCh: ch}
		c.aClosed = conn.NotifyClose(make(chan *amqp.Error, 1))
		c.aBlocked = conn.NotifyBlocked(make(chan amqp.Blocking, 1))
		return c, nil
	}
	return idleConn{}, fmt.Errorf("unknown client %q", client)
}

func (c idleConn) close(ctx context.Context) error {
	switch {
	case c.w != nil:
		return c.w.Close(ctx)
	case c.a != nil:
		return c.a.Close()
	}
	return nil
}

// idleSnapshot collects garbage twice and reads what the case measures.
func idleSnapshot() (heapInuse, stackInuse uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
}

// measureIdle is the child's work (steps 1 to 4 above, then closing).
func measureIdle(req idleRequest) (idleFigures, error) {
	if req.Conns < 1 {
		return idleFigures{}, errors.New("no connections to open")
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	conns := make([]idleConn, 0, req.Conns)

	heap0, stack0, g0 := idleSnapshot()
	t0 := time.Now()
	var err error
	for len(conns) < req.Conns {
		c, e := openIdle(ctx, req.Client, req.URL)
		if e != nil {
			err = fmt.Errorf("opening connection %d of %d: %w", len(conns)+1, req.Conns, e)
			break
		}
		conns = append(conns, c)
	}
	open := time.Since(t0)
	var fig idleFigures
	if err == nil {
		time.Sleep(req.Settle)
		heap1, stack1, g1 := idleSnapshot()
		n := float64(len(conns))
		fig = idleFigures{
			Conns:           len(conns),
			HeapInuseDelta:  int64(heap1) - int64(heap0),
			StackInuseDelta: int64(stack1) - int64(stack0),
			GoroutinesDelta: g1 - g0,
			OpenSeconds:     open.Seconds(),
		}
		fig.BytesPerConn = float64(fig.HeapInuseDelta+fig.StackInuseDelta) / n
		fig.GoroutinesPerConn = float64(fig.GoroutinesDelta) / n
	}
	if cerr := closeIdle(conns); err == nil {
		err = cerr
	}
	return fig, err
}

// closeIdle closes every connection, giving up after idleCloseWait (the
// child then exits and the kernel closes what is left).
func closeIdle(conns []idleConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), idleCloseWait)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var errs []error
		for i, c := range conns {
			if err := c.close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("closing connection %d: %w", i+1, err))
			}
		}
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("closing %d connections: %w", len(conns), ctx.Err())
	}
}

// idleChildIfAsked runs measureIdle and exits when this process was
// started as an idle-footprint child; otherwise it returns.
func idleChildIfAsked() {
	js := os.Getenv(idleEnv)
	if js == "" {
		return
	}
	var req idleRequest
	err := json.Unmarshal([]byte(js), &req)
	var fig idleFigures
	if err == nil {
		fig, err = measureIdle(req)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle-footprint child:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(fig)
	fmt.Fprintf(os.Stdout, "%s%s\n", idleResultTag, b)
	os.Exit(0)
}

// runIdle runs one client's round of the idle-footprint case in a child.
func runIdle(e *env, cl client, c caseDef, round int) runResult {
	r := runResult{Case: c.ID, Client: cl.Name(), Round: round, Messages: c.N}
	fig, err := idleInChild(idleRequest{Client: cl.Name(), URL: e.amqpURL, Conns: c.N, Settle: idleSettle})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Seconds = fig.OpenSeconds
	r.Idle = &fig
	return r
}

// idleInChild re-executes this binary (or test binary) as an
// idle-footprint child and reads its figures.
func idleInChild(req idleRequest) (idleFigures, error) {
	self, err := os.Executable()
	if err != nil {
		return idleFigures{}, err
	}
	js, err := json.Marshal(req)
	if err != nil {
		return idleFigures{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), idleEnv+"="+string(js))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return idleFigures{}, fmt.Errorf("%w: %s", err, msg)
		}
		return idleFigures{}, err
	}
	return parseIdleOutput(stdout.String())
}

// parseIdleOutput finds the child's "IDLE {json}" line.
func parseIdleOutput(out string) (idleFigures, error) {
	for _, line := range strings.Split(out, "\n") {
		if js, ok := strings.CutPrefix(line, idleResultTag); ok {
			var fig idleFigures
			if err := json.Unmarshal([]byte(js), &fig); err != nil {
				return idleFigures{}, fmt.Errorf("idle-footprint child: %w", err)
			}
			return fig, nil
		}
	}
	return idleFigures{}, fmt.Errorf("idle-footprint child printed no result: %q", out)
}

// summarizeIdle returns the medians of one client's successful rounds.
func summarizeIdle(results []runResult, caseID, clientName string) *idleSummary {
	var b, g []float64
	for _, r := range results {
		if r.Case == caseID && r.Client == clientName && r.Error == "" && r.Idle != nil {
			b = append(b, r.Idle.BytesPerConn)
			g = append(g, r.Idle.GoroutinesPerConn)
		}
	}
	if len(b) == 0 {
		return nil
	}
	return &idleSummary{BytesPerConn: median(b), GoroutinesPerConn: median(g), MinBytesPerConn: slices.Min(b), MaxBytesPerConn: slices.Max(b)}
}

// idleMissed lists the idle targets the summary misses.
func idleMissed(cs caseSummary) []string {
	t := cs.Target
	w := cs.Clients[clientWarren]
	if w == nil || w.Idle == nil {
		return nil
	}
	var missed []string
	if t.MaxIdleBytesPerConn > 0 && w.Idle.BytesPerConn > t.MaxIdleBytesPerConn {
		missed = append(missed, fmt.Sprintf("B/conn %.0f > %s", w.Idle.BytesPerConn, kib(t.MaxIdleBytesPerConn)))
	}
	if t.MaxIdleGoroutinesPerConn > 0 && w.Idle.GoroutinesPerConn > t.MaxIdleGoroutinesPerConn {
		missed = append(missed, fmt.Sprintf("goroutines/conn %.2f > %g", w.Idle.GoroutinesPerConn, t.MaxIdleGoroutinesPerConn))
	}
	if t.IdleBytesBelowAMQP091 && cs.IdleBytesRatio >= 1 {
		missed = append(missed, fmt.Sprintf("B/conn %.2f× ≥ amqp091-go's", cs.IdleBytesRatio))
	}
	return missed
}

// idleTargetParts describes the idle fields of a target.
func idleTargetParts(t target) []string {
	var parts []string
	if t.MaxIdleBytesPerConn > 0 {
		parts = append(parts, "B/conn ≤"+kib(t.MaxIdleBytesPerConn))
	}
	if t.MaxIdleGoroutinesPerConn > 0 {
		parts = append(parts, fmt.Sprintf("goroutines/conn ≤%g", t.MaxIdleGoroutinesPerConn))
	}
	if t.IdleBytesBelowAMQP091 {
		parts = append(parts, "B/conn <amqp091")
	}
	return parts
}

func kib(b float64) string {
	if b >= 1024 && b == float64(int(b)/1024*1024) {
		return fmt.Sprintf("%d KiB", int(b)/1024)
	}
	return fmt.Sprintf("%.0f B", b)
}

// writeIdleTable prints the idle-footprint rows, if any, as a table of
// their own.
func writeIdleTable(w io.Writer, rep report) {
	var rows []caseSummary
	for _, cs := range rep.Summary {
		if cs.Case.Kind == kindIdle {
			rows = append(rows, cs)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "Idle footprint: per open idle connection (one channel, a close and a blocked listener), measured in a fresh child process per client and round; heap and stack in use after GC, and goroutines, over a baseline taken before connecting.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | conns | B/conn warren | B/conn amqp091 | B/conn W/A | goroutines/conn warren | goroutines/conn amqp091 | target | verdict |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---|")
	for _, cs := range rows {
		cell := func(name string, f func(*idleSummary) float64, prec int) string {
			s := cs.Clients[name]
			switch {
			case s != nil && s.Idle != nil:
				return fmt.Sprintf("%.*f", prec, f(s.Idle))
			case s != nil && s.Errors > 0:
				return "error"
			}
			return "—"
		}
		bytesOf := func(s *idleSummary) float64 { return s.BytesPerConn }
		gorOf := func(s *idleSummary) float64 { return s.GoroutinesPerConn }
		rat := "—"
		if cs.Verdict != "n/a" {
			rat = fmt.Sprintf("%.2f", cs.IdleBytesRatio)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", cs.Case.ID, cs.Case.N,
			cell(clientWarren, bytesOf, 0), cell(clientAMQP091, bytesOf, 0), rat,
			cell(clientWarren, gorOf, 2), cell(clientAMQP091, gorOf, 2), cs.Case.Target(), cs.Verdict)
	}
	fmt.Fprintln(w)
	for _, cs := range rows {
		for _, name := range []string{clientWarren, clientAMQP091} {
			if s := cs.Clients[name]; s != nil && s.Rounds > 1 && s.Idle != nil {
				fmt.Fprintf(w, "- %s %s: B/conn range %.0f–%.0f over %d rounds\n", cs.Case.ID, name, s.Idle.MinBytesPerConn, s.Idle.MaxBytesPerConn, s.Rounds)
			}
		}
	}
}
