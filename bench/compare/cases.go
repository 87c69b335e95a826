package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Case kinds.
const (
	kindPublish        = "publish"            // publish n, then one round trip
	kindPublishConfirm = "publish-confirm"    // confirm mode, at most window unconfirmed
	kindConsumeNoAck   = "consume-noack"      // consume n with no-ack
	kindConsumeAck     = "consume-ack"        // consume n, ack each
	kindLatency        = "confirm-latency"    // one publish at a time, wait for its confirm
	brokerScripted     = "scripted"           // the scripted broker process
	brokerRabbit       = "rabbitmq"           // the real broker
	caseTimeout        = 10 * time.Minute     // bound on one client's run of one case
	windowAll          = 0                    // publish-confirm: everything in flight
	statsWait          = 3 * time.Second      // how long to wait for the scripted broker's report
	latencyPublishSize = 64                   // body of the latency case
	scriptedQueue      = "bench.publish.sink" // publishes to the scripted broker
)

// caseDef is one row of the table.
type caseDef struct {
	ID     string `json:"id"`
	Broker string `json:"broker"`
	Kind   string `json:"kind"`
	Size   int    `json:"body_bytes"`
	N      int    `json:"messages"`
	Window int    `json:"window,omitempty"` // publish-confirm; windowAll = all in flight
}

// Target is the goal the brief sets for the case.
func (c caseDef) Target() target {
	switch {
	case c.Kind == kindIdle:
		return idleTarget()
	case c.Broker == brokerScripted:
		return target{MinThroughput: 3, MaxAllocs: 0.25}
	case c.Kind == kindPublishConfirm && c.Window == windowAll:
		return target{MinThroughput: 5}
	default:
		return target{MinThroughput: 1, MaxCPU: 0.5}
	}
}

// target: ratios Warren/amqp091-go, except the idle-footprint fields
// (idle.go), which bound Warren's own figures; zero fields are not part
// of it.
type target struct {
	MinThroughput            float64 `json:"min_throughput_ratio,omitempty"`
	MaxCPU                   float64 `json:"max_cpu_ratio,omitempty"`
	MaxAllocs                float64 `json:"max_alloc_ratio,omitempty"`
	MaxIdleBytesPerConn      float64 `json:"max_idle_bytes_per_conn,omitempty"`
	MaxIdleGoroutinesPerConn float64 `json:"max_idle_goroutines_per_conn,omitempty"`
	IdleBytesBelowAMQP091    bool    `json:"idle_bytes_below_amqp091,omitempty"`
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// allCases returns the cases, with smaller counts when quick.
func allCases(quick bool) []caseDef {
	n64, n4k, nReal, nLat := 500_000, 200_000, 200_000, 5000
	if quick {
		n64, n4k, nReal, nLat = 20_000, 5_000, 5_000, 200
	}
	var cs []caseDef
	add := func(broker, kind string, size, n, window int) {
		id := broker + "/" + kind
		if kind == kindPublishConfirm {
			if window == windowAll {
				id += "-all"
			} else {
				id += fmt.Sprintf("-w%d", window)
			}
		}
		cs = append(cs, caseDef{ID: id + "/" + sizeName(size), Broker: broker, Kind: kind, Size: size, N: n, Window: window})
	}
	for _, size := range []int{64, 4096} {
		n := n64
		if size > 64 {
			n = n4k
		}
		add(brokerScripted, kindConsumeNoAck, size, n, 0)
		add(brokerScripted, kindConsumeAck, size, n, 0)
		add(brokerScripted, kindPublish, size, n, 0)
		add(brokerScripted, kindPublishConfirm, size, n, 1000)
	}
	add(brokerRabbit, kindPublish, 64, nReal, 0)
	add(brokerRabbit, kindPublishConfirm, 64, nReal, 1000)
	add(brokerRabbit, kindPublishConfirm, 64, nReal, windowAll)
	add(brokerRabbit, kindConsumeNoAck, 64, nReal, 0)
	add(brokerRabbit, kindConsumeAck, 64, nReal, 0)
	add(brokerRabbit, kindLatency, latencyPublishSize, nLat, 0)
	cs = append(cs, idleCase(quick)) // N is connections (idle.go)
	return cs
}

// env is what a case run needs besides the client.
type env struct {
	scripted *scriptedBroker // nil when the scripted cases are not run
	amqpURL  string          // the real broker
	seq      int             // for unique queue names
}

// outcome is what one client's run of one case produced.
type outcome struct {
	msgs      int
	latencies []time.Duration
}

func (e *env) url(c caseDef) string {
	if c.Broker == brokerScripted {
		return "amqp://guest:guest@" + e.scripted.Addr + "/"
	}
	return e.amqpURL
}

// runCase runs one client on one case, measured by m.
func (e *env) runCase(cl client, c caseDef, m *meter) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	queue := scriptedQueue
	if c.Broker == brokerScripted {
		if c.Kind == kindConsumeNoAck || c.Kind == kindConsumeAck {
			queue = fmt.Sprintf("bench.%d.%d", c.Size, c.N)
		}
		e.scripted.takeStats() // forget earlier reports
	} else {
		e.seq++
		queue = fmt.Sprintf("warren-compare.%d.%d.%s", pid, e.seq, cl.Name())
		prefill := 0
		if c.Kind == kindConsumeNoAck || c.Kind == kindConsumeAck {
			prefill = c.N
		}
		if err := adminQueue(e.amqpURL, queue, true, prefill, c.Size); err != nil {
			return outcome{}, fmt.Errorf("preparing queue: %w", err)
		}
		defer adminQueue(e.amqpURL, queue, false, 0, 0)
	}

	s, err := cl.Dial(ctx, e.url(c))
	if err != nil {
		return outcome{}, fmt.Errorf("dial: %w", err)
	}
	out, err := runOnSession(ctx, s, c, queue, m)
	m.Stop() // in case the run failed in the middle
	if cerr := s.Close(ctx); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err == nil && c.Broker == brokerScripted {
		err = e.checkScripted(c)
	}
	return out, err
}

func runOnSession(ctx context.Context, s session, c caseDef, queue string, m *meter) (outcome, error) {
	body := makeBody(c.Size)
	switch c.Kind {
	case kindPublish:
		m.Start()
		for i := 0; i < c.N; i++ {
			if err := s.Publish(ctx, queue, body); err != nil {
				return outcome{}, fmt.Errorf("publish %d: %w", i, err)
			}
		}
		if err := s.Sync(ctx, queue); err != nil {
			return outcome{}, fmt.Errorf("sync after publishing: %w", err)
		}
		m.Stop()
		return outcome{msgs: c.N}, nil

	case kindPublishConfirm:
		if err := s.Confirm(ctx); err != nil {
			return outcome{}, fmt.Errorf("confirm.select: %w", err)
		}
		window := c.Window
		if window == windowAll {
			window = c.N
		}
		pending := make([]confirmation, window)
		wait := func(i int) error {
			acked, err := pending[i%window].Wait(ctx)
			if err != nil {
				return fmt.Errorf("confirm of publish %d: %w", i, err)
			}
			if !acked {
				return fmt.Errorf("publish %d nacked", i)
			}
			pending[i%window] = nil
			return nil
		}
		m.Start()
		for i := 0; i < c.N; i++ {
			if i >= window {
				if err := wait(i - window); err != nil {
					return outcome{}, err
				}
			}
			cf, err := s.PublishConfirm(ctx, queue, body)
			if err != nil {
				return outcome{}, fmt.Errorf("publish %d: %w", i, err)
			}
			pending[i%window] = cf
		}
		for i := max(0, c.N-window); i < c.N; i++ {
			if err := wait(i); err != nil {
				return outcome{}, err
			}
		}
		m.Stop()
		return outcome{msgs: c.N}, nil

	case kindConsumeNoAck, kindConsumeAck:
		if err := s.ConsumeN(ctx, queue, c.N, c.Kind == kindConsumeNoAck, m.Start, m.Stop); err != nil {
			return outcome{}, err
		}
		return outcome{msgs: c.N}, nil

	case kindLatency:
		if err := s.Confirm(ctx); err != nil {
			return outcome{}, fmt.Errorf("confirm.select: %w", err)
		}
		lat := make([]time.Duration, c.N)
		m.Start()
		for i := range lat {
			t0 := time.Now()
			cf, err := s.PublishConfirm(ctx, queue, body)
			if err != nil {
				return outcome{}, fmt.Errorf("publish %d: %w", i, err)
			}
			acked, err := cf.Wait(ctx)
			if err != nil || !acked {
				return outcome{}, fmt.Errorf("confirm of publish %d: acked %v, %v", i, acked, err)
			}
			lat[i] = time.Since(t0)
		}
		m.Stop()
		return outcome{msgs: c.N, latencies: lat}, nil
	}
	return outcome{}, fmt.Errorf("unknown case kind %q", c.Kind)
}

// checkScripted compares the scripted broker's report on the connection
// with what the case did.
func (e *env) checkScripted(c caseDef) error {
	deadline := time.After(statsWait)
	for {
		if st := e.scripted.takeStats(); len(st) > 0 {
			s := st[len(st)-1]
			switch {
			case s.Err != "":
				return fmt.Errorf("scripted broker: %s", s.Err)
			case (c.Kind == kindPublish || c.Kind == kindPublishConfirm) && s.Published != uint64(c.N):
				return fmt.Errorf("scripted broker received %d publishes, want %d", s.Published, c.N)
			case (c.Kind == kindConsumeNoAck || c.Kind == kindConsumeAck) && s.Delivered != uint64(c.N):
				return fmt.Errorf("scripted broker delivered %d, want %d", s.Delivered, c.N)
			case c.Kind == kindConsumeAck && s.Acks != uint64(c.N):
				return fmt.Errorf("scripted broker received %d acks, want %d", s.Acks, c.N)
			}
			return nil
		}
		select {
		case <-e.scripted.lines:
		case <-deadline:
			return errors.New("scripted broker did not report on the connection")
		}
	}
}

func makeBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// adminQueue declares (and prefills with n messages of size bytes) or
// deletes a queue on the real broker over its own amqp091-go connection,
// outside any measured region.
func adminQueue(url, queue string, declare bool, n, size int) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if !declare {
		_, err := ch.QueueDelete(queue, false, false, false)
		return err
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	body := makeBody(size)
	const window = 2000
	pending := make([]*amqp.DeferredConfirmation, window)
	waitFor := func(i int) error {
		if ok, err := pending[i%window].WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("prefill confirm: acked %v, %v", ok, err)
		}
		return nil
	}
	for i := 0; i < n; i++ {
		if i >= window {
			if err := waitFor(i - window); err != nil {
				return err
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqpPublishing(body))
		if err != nil {
			return err
		}
		pending[i%window] = dc
	}
	for i := max(0, n-window); i < n; i++ {
		if err := waitFor(i); err != nil {
			return err
		}
	}
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		return err
	}
	if q.Messages != n {
		return fmt.Errorf("prefilled queue holds %d messages, want %d", q.Messages, n)
	}
	return nil
}
