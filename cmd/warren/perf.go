package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

const perfAbout = `
A load test in the manner of RabbitMQ's PerfTest. Declares a temporary queue
(unless --queue), starts C consumers (manual acks, prefetch N) and P producers,
each on its own connection, and publishes to the queue through the default
exchange. Each message carries a run id, its producer id, a sequence number
and its send time in its first 24 bytes (padded with zeros to --size).

Several queues: --queues N declares N temporary queues (or uses the --queue
prefix's Q-0 … Q-N-1); consumer c consumes from queue c mod N, and through
the default exchange producer p publishes to queue p mod N (so give at least
N consumers, or none, and N producers). With --exchange X the producers
publish through X instead: perf declares it as --exchange-type (direct, the
default; topic; fanout) unless it exists (amq.direct, amq.topic, amq.fanout
or one of yours: give its type), binds queue i with routing key i mod K of
the --routing-key values (default: the queues' names; with more keys than
queues, key k goes to queue k mod N too), and each producer publishes with
the keys in turn. perf works out from the bindings which queues each key
reaches, and checks each queue: the summary gives every queue's sent (the
messages routed to it), received and consumed counts; a message that reaches
several queues counts in each. At the end perf deletes the exchange and the
queues it declared, and removes the bindings it made between an existing
exchange and a --queue queue.

Producers run for --duration or until --count messages were sent in all,
limited to --rate messages per second in all (0: as fast as possible). With
confirms (the default; --confirm=false to turn them off) each producer keeps
at most --confirm-window publishes unconfirmed.

Every second a progress line goes to stderr: elapsed time, sent/s,
confirmed/s, received/s and the consumer latency (send to receive) p50/p99.
At the end warren waits up to --drain-timeout for the consumers to receive
everything, then checks that every confirmed message (every sent one without
confirms) was consumed exactly once, and prints a summary: on stdout, or with
--json a JSON object on stdout (the text summary then goes to stderr).
--svg FILE writes a chart of throughput and latency over time.

Exit code 0 only when the check passes: no message missing, none delivered
twice without the redelivered flag (redeliveries are counted apart), and no
connection or channel error. With --queue, the queue's existing messages are
consumed (and acknowledged) too and counted as foreign.

A lost connection (the broker restarted, an operator closed it, the network
failed) is recovered, trying each --url in turn for up to --recovery-timeout:
producers publish on and consumers consume again. Publishes whose
confirmation the loss cut off count as maybe-sent, not confirmed (so not
expected by the check); messages delivered again after a loss carry the
redelivered flag. The progress line shows connections recovering and the
recoveries so far; the summary gives their number and durations (loss to
recovered, p50 and max). A connection lost again before the run made progress
since its last recovery ends the run with the error.`

// perfHeader is the size of the message header: run id, producer id,
// sequence number, send time (Unix nanoseconds), big-endian.
const perfHeader = 24

type perfOptions struct {
	producers, consumers int
	size                 int
	duration             time.Duration
	count                int64
	confirm              bool
	window               int
	rate                 float64
	prefetch             int
	persistent           bool
	queue                string
	queues               int
	exchange             string
	exchangeType         string
	routingKeys          []string
	drainTimeout         time.Duration
}

func runPerf(e *env, args []string) error {
	f := newFlags(e, "warren perf [--producers P] [--consumers C] [--size S] [--duration D | --count N] [--confirm] [--rate R] [--prefetch N] [--json] [--svg FILE]\n"+
		"                   [--queue Q] [--queues N] [--exchange X [--exchange-type direct|topic|fanout] [--routing-key K]…]", perfAbout)
	var o perfOptions
	f.IntVar(&o.producers, "producers", 1, "number of producers, each with its own connection")
	f.IntVar(&o.consumers, "consumers", 1, "number of consumers, each with its own connection (0: publish only, no check)")
	f.IntVar(&o.size, "size", perfHeader, fmt.Sprintf("message size in `bytes` (at least %d)", perfHeader))
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long the producers publish")
	f.Int64Var(&o.count, "count", 0, "publish `N` messages in all, then stop (instead of --duration)")
	f.BoolVar(&o.confirm, "confirm", true, "use publisher confirms")
	f.IntVar(&o.window, "confirm-window", 1000, "unconfirmed publishes each producer may have outstanding")
	f.Float64Var(&o.rate, "rate", 0, "total publish rate limit in messages per second (0: unlimited)")
	f.IntVar(&o.prefetch, "prefetch", 100, "prefetch count (basic.qos) of each consumer")
	f.BoolVar(&o.persistent, "persistent", false, "publish persistent messages (delivery mode 2)")
	f.StringVar(&o.queue, "queue", "", "use queue `Q` (declared if missing, never deleted) instead of a temporary one;\nwith --queues N, the prefix of the queues' names (Q-0 … Q-N-1)")
	f.IntVar(&o.queues, "queues", 1, "spread the load over `N` queues: consumer c consumes from queue c mod N and, through the default\nexchange, producer p publishes to queue p mod N (so at least N of each)")
	f.StringVar(&o.exchange, "exchange", "", "publish through exchange `X`, bound to every queue with a routing key (default: the\ndefault exchange); declared (and deleted at the end) unless it exists, such as amq.direct")
	f.StringVar(&o.exchangeType, "exchange-type", "direct", "`type` of the --exchange: direct, topic or fanout (perf declares it so, or expects it so\nwhen it exists)")
	f.Var((*stringList)(&o.routingKeys), "routing-key", "a routing key `K` (repeatable; default: the queues' names): of M keys, queue i is bound with\nkey i mod M (and key k to queue k mod N); each producer publishes with the keys in turn")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "how long to wait at the end for confirms and for the consumers to catch up")
	asJSON := f.Bool("json", false, "print the summary as a JSON object on stdout")
	svgFile := f.String("svg", "", "write an SVG chart of throughput and latency to `FILE`")
	f.recoveryFlag()
	if err := f.parseFlagsOnly(args); err != nil {
		return err
	}
	switch {
	case o.producers < 1:
		return usageErrorf("--producers must be at least 1")
	case o.consumers < 0:
		return usageErrorf("--consumers must not be negative")
	case o.size < perfHeader:
		return usageErrorf("--size must be at least %d bytes (the message header)", perfHeader)
	case f.wasSet("duration") && f.wasSet("count"):
		return usageErrorf("give --duration or --count, not both")
	case o.duration <= 0 && o.count <= 0:
		return usageErrorf("--duration must be positive")
	case o.count < 0:
		return usageErrorf("--count must not be negative")
	case o.window < 1:
		return usageErrorf("--confirm-window must be at least 1")
	case o.rate < 0:
		return usageErrorf("--rate must not be negative")
	case o.prefetch < 1 || o.prefetch > 65535:
		return usageErrorf("--prefetch must be 1 to 65535")
	case o.drainTimeout < 0:
		return usageErrorf("--drain-timeout must not be negative")
	}
	if err := checkPerfRouting(f, &o); err != nil {
		return err
	}
	if o.count > 0 {
		o.duration = 0
	}
	if _, err := f.brokerURLs(); err != nil {
		return err
	}
	sum, err := (&perfRun{e: e, f: f, o: o}).run()
	if err != nil {
		return e.watchErr(err)
	}
	if *svgFile != "" {
		if err := writeSVGFile(*svgFile, sum); err != nil {
			sum.Errors = append(sum.Errors, "writing the SVG chart: "+err.Error())
			sum.OK = false
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(sum, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		sum.writeText(e.stderr)
	} else {
		sum.writeText(e.stdout)
	}
	if !sum.OK {
		return &exitError{code: exitFailure, err: errors.New(sum.failure())}
	}
	return nil
}

func writeSVGFile(name string, sum *perfSummary) error {
	fh, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := writeSVG(fh, sum); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// perfRun is one load test.
type perfRun struct {
	e     *env
	f     *cmdFlags
	o     perfOptions
	runID uint32
	start time.Time

	queues      []*perfQueue
	queuePrefix string        // the queue's name, or the prefix of their names
	targets     []*perfTarget // through the exchange: a routing key each
	bindings    []perfBinding
	tempQueues  []string // declared by perf, deleted at the end

	sent, confirmed, nacked, unconfirmed atomic.Uint64
	maybeSent                            atomic.Uint64 // confirmations a connection loss cut off
	deliveries, redelivered, foreign     atomic.Uint64
	stale                                atomic.Uint64 // acks refused: the delivery came before a recovery
	firsts                               atomic.Uint64 // first deliveries of our messages (in each queue)
	copies, lostCopies                   atomic.Uint64 // queue copies of the sent, and of the nacked or maybe-sent, messages
	claimed                              atomic.Int64  // --count slots taken

	producers []*perfProducer
	consumers []*perfConsumer

	errMu  sync.Mutex
	errors []string

	series []perfPoint

	queueOpts    *warren.QueueOptions    // the temporary queues' declaration
	exchangeOpts *warren.ExchangeOptions // the exchange's, when perf declared it
	stopSending  context.CancelFunc      // ends the producers early (Ctrl-C, a stall)
	cleaned      bool
}

type perfProducer struct {
	id        int
	since     atomic.Int64 // when the publish call under way began (Unix ns), 0 between calls
	conn      *warren.Connection
	targets   []*perfTarget // where it publishes, in turn (see perfRun.target)
	sent      uint64        // sequence numbers [0, sent) were published
	stoppedAt time.Time
	confirmed bitset // written by the confirm goroutine only
}

type perfConsumer struct {
	queue int // index in perfRun.queues
	conn  *warren.Connection
	cons  *warren.Consumer
	done  chan struct{}

	mu       sync.Mutex
	interval histogram
	total    histogram
}

func (r *perfRun) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errors) < 20 {
		r.errors = append(r.errors, msg)
	}
}

func (r *perfRun) dial(role string) (*warren.Connection, error) {
	return r.f.dialAs(role, warren.Config{ConsumerBuffer: max(r.o.prefetch, 256)})
}

func (r *perfRun) run() (*perfSummary, error) {
	e, o := r.e, r.o
	r.runID = rand.Uint32()
	ctl, err := r.dial("control")
	if err != nil {
		return nil, err
	}
	defer e.closeConn(ctl)
	ch, err := e.openChannel(ctl)
	if err != nil {
		return nil, err
	}
	defer r.cleanup(ch) // also after a failure midway
	if err := r.declareTopology(ch); err != nil {
		return nil, err
	}

	// Connections first, so that a refused login fails before anything runs.
	defer func() {
		for _, p := range r.producers {
			r.e.closeConn(p.conn)
		}
		for _, c := range r.consumers {
			r.e.closeConn(c.conn)
		}
	}()
	for i := 0; i < o.consumers; i++ {
		conn, err := r.dial(fmt.Sprintf("consumer %d", i))
		if err != nil {
			return nil, err
		}
		c := &perfConsumer{queue: i % len(r.queues), conn: conn, done: make(chan struct{})}
		r.consumers = append(r.consumers, c)
		q := r.queues[c.queue]
		q.consumers++
		cch, err := e.openChannel(conn)
		if err != nil {
			return nil, err
		}
		ctx, done := e.rpc("basic.qos")
		if err := done(cch.Qos(ctx, warren.QosOptions{PrefetchCount: o.prefetch})); err != nil {
			return nil, err
		}
		if err := r.declareOnConsumer(cch, c.queue); err != nil {
			return nil, err
		}
		ctx, done = e.rpc("basic.consume")
		c.cons, err = cch.Consume(ctx, q.name, warren.ConsumeOptions{})
		if err = done(err); err != nil {
			return nil, err
		}
	}
	for i := 0; i < o.producers; i++ {
		conn, err := r.dial(fmt.Sprintf("producer %d", i))
		if err != nil {
			return nil, err
		}
		p := &perfProducer{id: i, conn: conn, targets: r.targets}
		if o.exchange == "" {
			qi := i % len(r.queues)
			q := r.queues[qi]
			q.producers++
			t := &perfTarget{key: q.name, routes: make([]bool, len(r.queues))}
			t.routes[qi] = true
			p.targets = []*perfTarget{t}
		}
		r.producers = append(r.producers, p)
		for _, q := range r.queues {
			q.recv = append(q.recv, &received{})
		}
	}

	for _, c := range r.consumers {
		go r.consume(c)
	}
	r.start = time.Now()
	sendCtx, stopSending := context.WithCancel(e.ctx)
	defer stopSending()
	r.stopSending = stopSending
	if o.duration > 0 {
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithTimeout(sendCtx, o.duration)
		defer cancel()
	}
	// Confirms still outstanding when sending stops get drainTimeout more.
	confirmCtx, stopConfirms := context.WithCancel(context.Background())
	defer stopConfirms()

	stopReport := make(chan struct{})
	reportDone := make(chan struct{})
	go r.report(stopReport, reportDone)

	var pwg sync.WaitGroup
	for _, p := range r.producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			r.produce(sendCtx, confirmCtx, p)
		}()
	}
	// Wait for the producers to stop sending; their confirm goroutines end
	// when every confirm is in, or at the drain deadline.
	sendingDone := make(chan struct{})
	go func() { pwg.Wait(); close(sendingDone) }()
	select {
	case <-sendingDone:
	case <-sendCtx.Done():
		select {
		case <-sendingDone:
		case <-time.After(o.drainTimeout):
			stopConfirms()
			<-sendingDone
		}
	}
	sendingStopped := time.Now()
	var sendElapsed time.Duration
	for _, p := range r.producers {
		if !p.stoppedAt.IsZero() {
			sendElapsed = max(sendElapsed, p.stoppedAt.Sub(r.start))
		}
	}
	drainDeadline := sendingStopped.Add(o.drainTimeout)
	stopConfirms()

	// Wait for the consumers to receive everything that may arrive.
	if o.consumers > 0 {
		// Publishes a connection loss cut off may never have reached the
		// queue: count them out, then check the expected ones exactly.
		target := r.copies.Load() - r.lostCopies.Load()
		tick := time.NewTicker(10 * time.Millisecond)
		for (r.firsts.Load() < target || !r.allExpectedSeen()) && time.Now().Before(drainDeadline) && !r.consumersGone() {
			<-tick.C
		}
		tick.Stop()
	}
	consumeElapsed := time.Since(r.start)
	for _, c := range r.consumers {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := c.cons.Cancel(ctx); err != nil && c.conn.IsAlive() {
			r.fail("cancelling a consumer: %v", err)
		}
		cancel()
	}
	for _, c := range r.consumers {
		select {
		case <-c.done:
		case <-time.After(closeTimeout):
			r.fail("a consumer did not stop")
		}
	}
	close(stopReport)
	<-reportDone
	r.cleanup(ch)
	return r.summary(sendElapsed, consumeElapsed, time.Now().After(drainDeadline)), nil
}

// allExpectedSeen reports whether every expected message (every
// confirmed one, or every sent one without confirms) was consumed from
// every queue it routes to. It runs once the producers stopped.
func (r *perfRun) allExpectedSeen() bool {
	for qi, q := range r.queues {
		for i, p := range r.producers {
			rv := q.recv[i]
			rv.mu.Lock()
			for seq := uint64(0); seq < p.sent; seq++ {
				if r.target(p, seq).routes[qi] && (!r.o.confirm || p.confirmed.has(seq)) && !rv.seen.has(seq) {
					rv.mu.Unlock()
					return false
				}
			}
			rv.mu.Unlock()
		}
	}
	return true
}

// consumersGone reports whether every consumer ended.
func (r *perfRun) consumersGone() bool {
	for _, c := range r.consumers {
		select {
		case <-c.done:
		default:
			return false
		}
	}
	return true
}

func (r *perfRun) produce(ctx, confirmCtx context.Context, p *perfProducer) {
	o := r.o
	setup, done := r.e.rpc("channel.open")
	ch, err := p.conn.Channel(setup)
	if err = done(err); err != nil {
		r.fail("producer %d: opening a channel: %v", p.id, err)
		return
	}
	if r.exchangeOpts != nil {
		// For this connection's recovery: should a broker restart have
		// dropped the exchange, publishes to it would fail.
		if err := r.declareExchangeOn(ch); err != nil {
			r.fail("producer %d: %v", p.id, err)
			return
		}
	}
	type outstanding struct {
		seq uint64
		cf  *warren.Confirmation
	}
	var pending chan outstanding
	confirmsDone := make(chan struct{})
	if o.confirm {
		setup, done := r.e.rpc("confirm.select")
		if err := done(ch.ConfirmSelect(setup)); err != nil {
			r.fail("producer %d: %v", p.id, err)
			return
		}
		pending = make(chan outstanding, o.window)
		go func() {
			defer close(confirmsDone)
			for pc := range pending {
				acked, err := pc.cf.Wait(confirmCtx)
				switch {
				case errors.Is(err, warren.ErrMaybeSent):
					r.maybeSent.Add(1)
					r.lostCopies.Add(r.target(p, pc.seq).copies())
				case err != nil:
					r.unconfirmed.Add(1)
				case acked:
					p.confirmed.set(pc.seq)
					r.confirmed.Add(1)
					r.e.watch.made()
				default:
					r.nacked.Add(1)
					r.lostCopies.Add(r.target(p, pc.seq).copies())
				}
			}
		}()
	} else {
		close(confirmsDone)
	}
	defer func() {
		if pending != nil {
			close(pending)
		}
		<-confirmsDone
	}()

	defer func() { p.stoppedAt = time.Now() }() // runs before the wait for confirms
	msg := warren.Publishing{Body: make([]byte, o.size)}
	if o.persistent {
		msg.Properties.DeliveryMode = proto.Persistent
	}
	binary.BigEndian.PutUint32(msg.Body[0:], r.runID)
	binary.BigEndian.PutUint32(msg.Body[4:], uint32(p.id))
	perProducer := o.rate / float64(o.producers)
	for seq := uint64(0); ; seq++ {
		if ctx.Err() != nil {
			return
		}
		if o.count > 0 && r.claimed.Add(1) > o.count {
			return
		}
		if perProducer > 0 {
			due := r.start.Add(time.Duration(float64(seq) / perProducer * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
		binary.BigEndian.PutUint64(msg.Body[8:], seq)
		binary.BigEndian.PutUint64(msg.Body[16:], uint64(time.Now().UnixNano()))
		t := r.target(p, seq)
		if o.confirm {
			p.since.Store(time.Now().UnixNano())
			cf, err := ch.PublishWithConfirm(ctx, t.exchange, t.key, msg)
			p.since.Store(0)
			if err != nil {
				if ctx.Err() == nil {
					r.fail("producer %d: publishing: %v", p.id, err)
				}
				return
			}
			p.sent = seq + 1
			r.copies.Add(t.copies())
			r.sent.Add(1)
			select {
			case pending <- outstanding{seq, cf}: // blocks while the window is full
			case <-confirmCtx.Done():
				r.unconfirmed.Add(1)
				return
			}
		} else {
			p.since.Store(time.Now().UnixNano())
			err := ch.Publish(ctx, t.exchange, t.key, msg)
			p.since.Store(0)
			if err != nil {
				if ctx.Err() == nil {
					r.fail("producer %d: publishing: %v", p.id, err)
				}
				return
			}
			p.sent = seq + 1
			r.copies.Add(t.copies())
			r.sent.Add(1)
		}
	}
}

func (r *perfRun) consume(c *perfConsumer) {
	defer close(c.done)
	q := r.queues[c.queue]
	for d := range c.cons.Deliveries() {
		now := time.Now()
		r.deliveries.Add(1)
		q.deliveries.Add(1)
		r.e.watch.made()
		if d.Redelivered {
			r.redelivered.Add(1)
		}
		b := d.Body
		if len(b) >= perfHeader && binary.BigEndian.Uint32(b) == r.runID && int(binary.BigEndian.Uint32(b[4:])) < len(q.recv) {
			pid := binary.BigEndian.Uint32(b[4:])
			seq := binary.BigEndian.Uint64(b[8:])
			sentAt := int64(binary.BigEndian.Uint64(b[16:]))
			if q.recv[pid].mark(seq, d.Redelivered) {
				r.firsts.Add(1)
			}
			lat := max(now.UnixNano()-sentAt, 0) / int64(time.Microsecond)
			c.mu.Lock()
			c.interval.record(uint64(lat))
			c.total.record(uint64(lat))
			c.mu.Unlock()
		} else {
			r.foreign.Add(1)
		}
		if err := d.Ack(false); errors.Is(err, warren.ErrStaleDelivery) {
			r.stale.Add(1) // delivered again, flagged redelivered
		} else if err != nil {
			r.fail("acknowledging: %v", err)
		}
	}
	if err := c.cons.Err(); err != nil {
		r.fail("consumer: %v", err)
	}
}

// perfPoint is one second of the run.
type perfPoint struct {
	T         float64 `json:"t"`         // seconds since the start, at the end of the interval
	Sent      float64 `json:"sent"`      // msg/s
	Confirmed float64 `json:"confirmed"` // msg/s
	Received  float64 `json:"received"`  // msg/s
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Latency   bool    `json:"-"` // P50 and P99 are known
}

// report prints a progress line every second and records the series.
func (r *perfRun) report(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := r.start
	var lastSent, lastConf, lastRecv uint64
	confMoved := r.start // when the confirmed count last moved
	stalled := false
	sample := func(now time.Time) {
		if !stalled {
			if msg := r.stall(now, &confMoved, lastConf); msg != "" {
				stalled = true
				r.fail("%s", msg)
				r.stopSending()
			}
		}
		dt := now.Sub(last).Seconds()
		sent, conf, recv := r.sent.Load(), r.confirmed.Load(), r.deliveries.Load()
		var h histogram
		for _, c := range r.consumers {
			c.mu.Lock()
			h.add(&c.interval)
			c.interval.reset()
			c.mu.Unlock()
		}
		pt := perfPoint{
			T:         now.Sub(r.start).Seconds(),
			Sent:      float64(sent-lastSent) / dt,
			Confirmed: float64(conf-lastConf) / dt,
			Received:  float64(recv-lastRecv) / dt,
			P50:       float64(h.quantile(0.50)) / 1000,
			P99:       float64(h.quantile(0.99)) / 1000,
			Latency:   h.n > 0,
		}
		r.series = append(r.series, pt)
		last, lastSent, lastConf, lastRecv = now, sent, conf, recv
		line := fmt.Sprintf("time %.1fs, sent %.0f msg/s", pt.T, pt.Sent)
		if r.o.confirm {
			line += fmt.Sprintf(", confirmed %.0f msg/s", pt.Confirmed)
		}
		line += fmt.Sprintf(", received %.0f msg/s", pt.Received)
		if pt.Latency {
			line += fmt.Sprintf(", latency p50 %s ms, p99 %s ms", fmtMS(pt.P50), fmtMS(pt.P99))
		}
		if rs := r.e.watch.stats(); rs.Losses > 0 {
			if rs.Recovering > 0 {
				line += fmt.Sprintf(", recovering %d connection(s)", rs.Recovering)
			}
			line += fmt.Sprintf(", recoveries %d (p50 %s ms, max %s ms)", rs.Recovered, fmtMS(rs.P50), fmtMS(rs.Max))
		}
		fmt.Fprintln(r.e.stderr, line)
	}
	for {
		select {
		case now := <-tick.C:
			sample(now)
		case <-stop:
			if now := time.Now(); now.Sub(last) >= 200*time.Millisecond {
				sample(now)
			}
			return
		}
	}
}

// stall reports a producer that has made no progress for --rpc-timeout
// (not counting time spent recovering): a publish the connection did not
// take (the broker blocks it, or stopped reading), or confirmations
// outstanding with none arriving. It runs on the report goroutine, once
// a second, before the sample that updates lastConf.
func (r *perfRun) stall(now time.Time, confMoved *time.Time, lastConf uint64) string {
	limit := r.e.rpcTimeout
	if r.e.watch.stats().Recovering > 0 {
		*confMoved = now
		return ""
	}
	for _, p := range r.producers {
		if since := p.since.Load(); since != 0 && now.Sub(time.Unix(0, since)) > limit {
			why := "the connection takes no more bytes (the broker stopped reading?)"
			if p.conn.Blocked() {
				why = "the broker blocks the connection (connection.blocked: a resource alarm)"
			}
			return fmt.Sprintf("producer %d: the broker did not take a message within %s: %s", p.id, limit, why)
		}
	}
	conf := r.confirmed.Load()
	settled := conf + r.nacked.Load() + r.unconfirmed.Load() + r.maybeSent.Load()
	if conf != lastConf || settled >= r.sent.Load() {
		*confMoved = now
		return ""
	}
	if now.Sub(*confMoved) > limit {
		return fmt.Sprintf("no answer from the broker to %d outstanding publish(es) within %s", r.sent.Load()-settled, limit)
	}
	return ""
}

func fmtMS(ms float64) string {
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

// perfSummary is the result of a run (the --json object).
type perfSummary struct {
	OK                    bool               `json:"ok"`
	Queue                 string             `json:"queue"`                   // its name, or with --queues N the prefix of their names
	Exchange              string             `json:"exchange"`                // "": the default exchange
	ExchangeType          string             `json:"exchange_type,omitempty"` // with an exchange
	ExchangeDeclared      bool               `json:"exchange_declared"`       // by perf (and deleted at the end)
	Queues                []perfQueueSummary `json:"queues"`
	Producers             int                `json:"producers"`
	Consumers             int                `json:"consumers"`
	Size                  int                `json:"size"`
	Confirm               bool               `json:"confirm"`
	ConfirmWindow         int                `json:"confirm_window,omitempty"`
	RateLimit             float64            `json:"rate_limit"`
	Prefetch              int                `json:"prefetch"`
	DurationSeconds       float64            `json:"duration_seconds"`
	Sent                  uint64             `json:"sent"`
	Confirmed             uint64             `json:"confirmed"`
	Nacked                uint64             `json:"nacked"`
	Unconfirmed           uint64             `json:"unconfirmed"`
	MaybeSent             uint64             `json:"maybe_sent"` // unconfirmed at a connection loss
	Expected              uint64             `json:"expected"`
	Consumed              uint64             `json:"consumed"`
	Missing               uint64             `json:"missing"`
	Duplicates            uint64             `json:"duplicates"`
	Received              uint64             `json:"received"`
	Redelivered           uint64             `json:"redelivered"`
	RedeliveredDuplicates uint64             `json:"redelivered_duplicates"`
	Unexpected            uint64             `json:"unexpected"`
	Foreign               uint64             `json:"foreign"`
	StaleAcks             uint64             `json:"stale_acks"` // deliveries from before a recovery
	Recoveries            recoveryStats      `json:"recoveries"`
	SendRate              float64            `json:"send_rate"`
	ConfirmRate           float64            `json:"confirm_rate"`
	ReceiveRate           float64            `json:"receive_rate"`
	Latency               perfLatency        `json:"latency_ms"`
	Interrupted           bool               `json:"interrupted"` // by Ctrl-C: the check still ran
	Errors                []string           `json:"errors"`
	Series                []perfPoint        `json:"series"`
	checked               bool               // consumers ran, so the check means something
	drainTimedOut         bool
	start                 time.Time // for the chart's title
}

// perfQueueSummary is one queue's part of a run. A message counts in
// every queue it routes to: through a fanout exchange, or several queues
// bound with its routing key, the queues' sent and expected add up to more
// than the run's messages; received always adds up to the total.
type perfQueueSummary struct {
	Name        string   `json:"name"`
	RoutingKeys []string `json:"routing_keys,omitempty"` // its binding keys to the exchange
	Producers   int      `json:"producers,omitempty"`    // publishing to it through the default exchange
	Consumers   int      `json:"consumers"`
	Sent        uint64   `json:"sent"`     // messages published that route to it
	Expected    uint64   `json:"expected"` // of those, the confirmed (every one without confirms)
	Received    uint64   `json:"received"` // deliveries from it, redeliveries and foreign messages included
	Consumed    uint64   `json:"consumed"` // expected messages received from it
	Missing     uint64   `json:"missing"`
	Duplicates  uint64   `json:"duplicates"`
}

type perfLatency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func (r *perfRun) summary(sendElapsed, consumeElapsed time.Duration, drainTimedOut bool) *perfSummary {
	o := r.o
	s := &perfSummary{
		Queue: r.queuePrefix, Exchange: o.exchange, ExchangeDeclared: r.exchangeOpts != nil,
		Producers: o.producers, Consumers: o.consumers, Size: o.size,
		Confirm: o.confirm, RateLimit: o.rate, Prefetch: o.prefetch,
		DurationSeconds: sendElapsed.Seconds(),
		Sent:            r.sent.Load(), Confirmed: r.confirmed.Load(), Nacked: r.nacked.Load(), Unconfirmed: r.unconfirmed.Load(),
		MaybeSent: r.maybeSent.Load(), Received: r.deliveries.Load(), Redelivered: r.redelivered.Load(), Foreign: r.foreign.Load(),
		StaleAcks: r.stale.Load(), Recoveries: r.e.watch.stats(),
		Series: r.series, checked: o.consumers > 0, start: r.start,
		Interrupted: r.e.ctx.Err() != nil, drainTimedOut: drainTimedOut,
	}
	if o.confirm {
		s.ConfirmWindow = o.window
	}
	if o.exchange != "" {
		s.ExchangeType = o.exchangeType
	}
	s.Queues = []perfQueueSummary{}
	for qi, q := range r.queues {
		qs := perfQueueSummary{Name: q.name, RoutingKeys: q.keys, Producers: q.producers, Consumers: q.consumers,
			Received: q.deliveries.Load()}
		for i, p := range r.producers {
			rv := q.recv[i]
			rv.mu.Lock()
			for seq := uint64(0); seq < p.sent; seq++ {
				routed := r.target(p, seq).routes[qi]
				expected := routed && (!o.confirm || p.confirmed.has(seq))
				got := rv.seen.has(seq)
				switch {
				case expected && got:
					qs.Consumed++
				case expected:
					qs.Missing++
				case got:
					s.Unexpected++
				}
				if routed {
					qs.Sent++
				}
				if expected {
					qs.Expected++
				}
			}
			qs.Duplicates += rv.duplicates
			s.RedeliveredDuplicates += rv.redelivered
			rv.mu.Unlock()
		}
		s.Expected += qs.Expected
		s.Consumed += qs.Consumed
		s.Missing += qs.Missing
		s.Duplicates += qs.Duplicates
		s.Queues = append(s.Queues, qs)
	}
	if secs := sendElapsed.Seconds(); secs > 0 {
		s.SendRate = float64(s.Sent) / secs
		s.ConfirmRate = float64(s.Confirmed) / secs
	}
	if secs := consumeElapsed.Seconds(); secs > 0 {
		s.ReceiveRate = float64(s.Received) / secs
	}
	var h histogram
	for _, c := range r.consumers {
		c.mu.Lock()
		h.add(&c.total)
		c.mu.Unlock()
	}
	s.Latency = perfLatency{
		P50: float64(h.quantile(0.50)) / 1000, P95: float64(h.quantile(0.95)) / 1000,
		P99: float64(h.quantile(0.99)) / 1000, Max: float64(h.max) / 1000, Mean: h.mean() / 1000,
	}
	s.roundFloats()
	r.errMu.Lock()
	s.Errors = append([]string{}, r.errors...)
	r.errMu.Unlock()
	if err := r.e.watch.err(); err != nil { // the cause of the errors that follow it
		s.Errors = append([]string{err.Error()}, s.Errors...)
	}
	if s.Unconfirmed > 0 {
		s.Errors = append(s.Errors, fmt.Sprintf("%d publish(es) left unconfirmed", s.Unconfirmed))
	}
	if s.Nacked > 0 {
		s.Errors = append(s.Errors, fmt.Sprintf("%d publish(es) nacked by the broker", s.Nacked))
	}
	s.OK = len(s.Errors) == 0 && (!s.checked || s.Missing == 0 && s.Duplicates == 0)
	return s
}

// roundFloats keeps the JSON readable: rates to 0.1 msg/s, times to 1 µs.
func (s *perfSummary) roundFloats() {
	r := func(x *float64, scale float64) { *x = math.Round(*x*scale) / scale }
	r(&s.DurationSeconds, 1e6)
	r(&s.SendRate, 10)
	r(&s.ConfirmRate, 10)
	r(&s.ReceiveRate, 10)
	for _, x := range []*float64{&s.Latency.P50, &s.Latency.P95, &s.Latency.P99, &s.Latency.Max, &s.Latency.Mean} {
		r(x, 1e3)
	}
	for i := range s.Series {
		pt := &s.Series[i]
		r(&pt.T, 1e3)
		r(&pt.Sent, 10)
		r(&pt.Confirmed, 10)
		r(&pt.Received, 10)
		r(&pt.P50, 1e3)
		r(&pt.P99, 1e3)
	}
}

// failure is the one-line reason for a failed run.
func (s *perfSummary) failure() string {
	var parts []string
	if s.checked && (s.Missing > 0 || s.Duplicates > 0) {
		msg := fmt.Sprintf("check failed: %d of %d expected message(s) missing, %d duplicate(s)", s.Missing, s.Expected, s.Duplicates)
		if s.Missing > 0 && s.drainTimedOut {
			msg += " (the consumers did not catch up within --drain-timeout)"
		}
		parts = append(parts, msg)
	}
	if len(s.Errors) > 0 {
		parts = append(parts, s.Errors[0])
		if len(s.Errors) > 1 {
			parts = append(parts, fmt.Sprintf("and %d more error(s)", len(s.Errors)-1))
		}
	}
	return strings.Join(parts, "; ")
}

func (s *perfSummary) writeText(w io.Writer) {
	mode := "no confirms"
	if s.Confirm {
		mode = fmt.Sprintf("confirms (window %d)", s.ConfirmWindow)
	}
	where := "queue " + s.Queue
	if len(s.Queues) > 1 {
		where = fmt.Sprintf("%d queues %s-0…%d", len(s.Queues), s.Queue, len(s.Queues)-1)
	}
	fmt.Fprintf(w, "summary: %d producer(s), %d consumer(s), %d-byte messages, %s, prefetch %d, %s\n",
		s.Producers, s.Consumers, s.Size, mode, s.Prefetch, where)
	if s.Exchange != "" {
		how := "existing"
		if s.ExchangeDeclared {
			how = "declared by perf"
		}
		fmt.Fprintf(w, "  exchange   %s (%s, %s)\n", s.Exchange, s.ExchangeType, how)
	}
	if len(s.Queues) > 1 || s.Exchange != "" {
		for _, q := range s.Queues {
			keys := ""
			if len(q.RoutingKeys) > 0 {
				quoted := make([]string, len(q.RoutingKeys))
				for i, k := range q.RoutingKeys {
					quoted[i] = fmt.Sprintf("%q", k)
				}
				keys = " (key " + strings.Join(quoted, ", ") + ")"
			}
			fmt.Fprintf(w, "  queue      %s%s: sent %d, received %d", q.Name, keys, q.Sent, q.Received)
			if s.checked {
				fmt.Fprintf(w, ", consumed %d of %d expected", q.Consumed, q.Expected)
				if q.Missing > 0 || q.Duplicates > 0 {
					fmt.Fprintf(w, ", %d missing, %d duplicate(s)", q.Missing, q.Duplicates)
				}
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "  sent       %d messages in %.2f s (%.0f msg/s)\n", s.Sent, s.DurationSeconds, s.SendRate)
	if s.Confirm {
		fmt.Fprintf(w, "  confirmed  %d (%.0f msg/s), nacked %d, unconfirmed %d", s.Confirmed, s.ConfirmRate, s.Nacked, s.Unconfirmed)
		if s.MaybeSent > 0 {
			fmt.Fprintf(w, ", maybe sent %d (cut off by a connection loss)", s.MaybeSent)
		}
		fmt.Fprintln(w)
	}
	if rs := s.Recoveries; rs.Losses > 0 {
		fmt.Fprintf(w, "  recovery   %d connection loss(es), %d recovered: loss to recovered p50 %s ms, max %s ms; %d stale ack(s)\n",
			rs.Losses, rs.Recovered, fmtMS(rs.P50), fmtMS(rs.Max), s.StaleAcks)
	}
	if s.checked {
		fmt.Fprintf(w, "  consumed   %d of %d expected; %d deliveries (%.0f msg/s), %d redelivered, %d foreign\n",
			s.Consumed, s.Expected, s.Received, s.ReceiveRate, s.Redelivered, s.Foreign)
		fmt.Fprintf(w, "  latency    p50 %s ms, p95 %s ms, p99 %s ms, max %s ms, mean %s ms\n",
			fmtMS(s.Latency.P50), fmtMS(s.Latency.P95), fmtMS(s.Latency.P99), fmtMS(s.Latency.Max), fmtMS(s.Latency.Mean))
		what := "confirmed"
		if !s.Confirm {
			what = "sent"
		}
		each := ""
		if len(s.Queues) > 1 {
			each = " from each queue it routes to"
		}
		if s.Missing == 0 && s.Duplicates == 0 {
			fmt.Fprintf(w, "  check      OK: every %s message consumed exactly once%s (%d redelivered duplicate(s), %d unexpected)\n",
				what, each, s.RedeliveredDuplicates, s.Unexpected)
		} else {
			fmt.Fprintf(w, "  check      FAILED: %d missing, %d duplicate(s), %d redelivered duplicate(s), %d unexpected\n",
				s.Missing, s.Duplicates, s.RedeliveredDuplicates, s.Unexpected)
		}
	} else {
		fmt.Fprintln(w, "  check      skipped: no consumers")
	}
	if s.Interrupted {
		fmt.Fprintln(w, "  note       interrupted: the producers stopped early")
	}
	for _, e := range s.Errors {
		fmt.Fprintf(w, "  error      %s\n", e)
	}
}
