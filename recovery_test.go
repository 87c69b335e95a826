package warren

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestRetryPolicyPlan(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	tests := []struct {
		name      string
		p         retryPolicy
		attempt   int
		r         float64
		wantAddr  int
		wantDelay time.Duration
	}{
		{"first attempt, one address, full jitter", retryPolicy{b: b, n: 1}, 0, 0.5, 0, 50 * time.Millisecond},
		{"second pass doubles", retryPolicy{b: b, n: 1}, 1, 0.5, 0, 100 * time.Millisecond},
		{"third pass doubles again", retryPolicy{b: b, n: 1}, 2, 1, 0, 400 * time.Millisecond},
		{"capped at Max", retryPolicy{b: b, n: 1}, 10, 1, 0, time.Second},
		{"huge attempt stays capped", retryPolicy{b: b, n: 1}, 100000, 1, 0, time.Second},
		{"jitter zero", retryPolicy{b: b, n: 1}, 3, 0, 0, 0},
		{"no jitter ignores r", retryPolicy{b: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3, NoJitter: true}, n: 1}, 1, 0.1, 0, 300 * time.Millisecond},
		{"three addresses: first of a pass waits", retryPolicy{b: b, n: 3}, 0, 1, 0, 100 * time.Millisecond},
		{"three addresses: the next is dialled at once", retryPolicy{b: b, n: 3}, 1, 1, 1, 0},
		{"three addresses: last of the pass", retryPolicy{b: b, n: 3}, 2, 1, 2, 0},
		{"three addresses: second pass waits longer", retryPolicy{b: b, n: 3}, 3, 1, 0, 200 * time.Millisecond},
		{"three addresses: second pass walks on", retryPolicy{b: b, n: 3}, 4, 1, 1, 0},
		{"no address counts as one", retryPolicy{b: b, n: 0}, 1, 1, 0, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, delay := tt.p.plan(tt.attempt, tt.r)
			require.Equal(t, tt.wantAddr, addr)
			require.Equal(t, tt.wantDelay, delay)
		})
	}
}

// The policy's delays, summed over a recovery's attempts, follow the
// backoff as a fake clock sees it: no attempt starts early, none later
// than the cap allows.
func TestRetryPolicyFakeClock(t *testing.T) {
	p := retryPolicy{b: Recovery{}.withDefaults().Backoff, n: 2}
	p.b.NoJitter = true
	var clock time.Duration
	var starts []time.Duration
	var addrs []int
	for attempt := range 8 {
		addr, delay := p.plan(attempt, 0.5)
		clock += delay
		starts = append(starts, clock)
		addrs = append(addrs, addr)
	}
	ms := time.Millisecond
	require.Equal(t, []int{0, 1, 0, 1, 0, 1, 0, 1}, addrs)
	require.Equal(t, []time.Duration{100 * ms, 100 * ms, 300 * ms, 300 * ms, 700 * ms, 700 * ms, 1500 * ms, 1500 * ms}, starts)
}

func TestAddressOrder(t *testing.T) {
	require.Equal(t, []int{0, 1, 2}, addressOrder(3, false, nil))
	require.Equal(t, []int{2, 0, 1}, addressOrder(3, true, func(n int) []int { return []int{2, 0, 1} }))
}

func TestLockedRetryWindow(t *testing.T) {
	require.Equal(t, 7*time.Second, lockedRetryWindow(7*time.Second, time.Minute), "configured wins")
	require.Equal(t, 10*time.Second, lockedRetryWindow(0, 2*time.Second), "at least 10 s")
	require.Equal(t, 25*time.Second, lockedRetryWindow(0, 10*time.Second), "2.5 heartbeats")
	require.Equal(t, 150*time.Second, lockedRetryWindow(0, time.Minute))
	require.Equal(t, 3*time.Minute, lockedRetryWindow(0, 10*time.Minute), "at most 3 minutes")
	require.Equal(t, 10*time.Second, lockedRetryWindow(0, 0), "no heartbeat")
}

func TestRecoveryDefaults(t *testing.T) {
	r := Recovery{}.withDefaults()
	require.False(t, r.Disabled, "on by default")
	require.Equal(t, 100*time.Millisecond, r.Backoff.Initial)
	require.Equal(t, 10*time.Second, r.Backoff.Max)
	require.Equal(t, 2.0, r.Backoff.Multiplier)
	require.Equal(t, 30*time.Second, r.AttemptTimeout)
	require.Zero(t, r.MaxAttempts, "unlimited")
	require.NotNil(t, r.Recoverable)
}

// recoveryEvents collects a connection's recovery events.
type recoveryEvents struct {
	ch chan RecoveryEvent
}

func watchRecovery(c *Connection) *recoveryEvents {
	return &recoveryEvents{ch: c.NotifyRecovery(make(chan RecoveryEvent, 64))}
}

// next waits for the next event of a kind, returning those skipped on the
// way.
func (r *recoveryEvents) waitFor(t *testing.T, kind RecoveryEventKind, within time.Duration) (RecoveryEvent, []RecoveryEvent) {
	t.Helper()
	var skipped []RecoveryEvent
	timeout := time.After(within)
	for {
		select {
		case e, ok := <-r.ch:
			require.True(t, ok, "recovery events ended before %s (after %v)", kind, skipped)
			if e.Kind == kind {
				return e, skipped
			}
			skipped = append(skipped, e)
		case <-timeout:
			t.Fatalf("no %s event within %s (saw %v)", kind, within, skipped)
		}
	}
}

func TestBrokerRecoveryAfterOperatorClose(t *testing.T) {
	ctx := brokerCtx(t)
	name := fmt.Sprintf("warren-test-recover-%d", time.Now().UnixNano())
	c := dialURL(t, brokerURL(), Config{ConnectionName: name})
	events := watchRecovery(c)
	closes := c.NotifyClose(make(chan error, 1))

	ch := newChannel(t, ctx, c)
	base := testQueueName(t)
	ex := base + ".x"
	require.NoError(t, ch.ExchangeDeclare(ctx, ex, "fanout", ExchangeOptions{AutoDelete: true}))
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(ctx, q.Name, "", ex, BindOptions{}))
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{})
	require.NoError(t, err)
	pub := confirmChannel(t, ctx, c)
	idle := newChannel(t, ctx, c) // never used: reopened all the same

	var lastTag, lastSeq uint64
	exchange := func(n int) {
		t.Helper()
		for i := range n {
			cf := publishConfirmed(t, ctx, pub, ex, "", Publishing{Body: []byte(fmt.Sprint(i))})
			require.Greater(t, cf.Seq, lastSeq, "confirm sequence numbers never repeat on a Channel")
			lastSeq = cf.Seq
		}
		for range n {
			select {
			case d, ok := <-cons.Deliveries():
				require.True(t, ok, "consumer ended: %v", cons.Err())
				require.Greater(t, d.DeliveryTag, lastTag, "delivery tags never repeat on a Channel")
				lastTag = d.DeliveryTag
				require.NoError(t, d.Ack(false))
			case <-ctx.Done():
				t.Fatal("delivery missing")
			}
		}
	}
	exchange(5)

	rabbitmqctl(t, "close_connection", connectionPid(t, name), "recovery test")
	lost, _ := events.waitFor(t, RecoveryLost, 10*time.Second)
	requireConnErr(t, lost.Err, ConnectionForced)
	rec, skipped := events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.NotEmpty(t, skipped, "retrying events came first")
	require.Equal(t, RecoveryRetrying, skipped[0].Kind)
	require.Equal(t, 1, skipped[0].Attempt)
	require.Empty(t, rec.NotRestored)
	require.Len(t, rec.Renamed, 1, "the server-named queue got a new name")
	require.Equal(t, q.Name, rec.Renamed[0].Old)
	require.NotEqual(t, q.Name, rec.Renamed[0].New)
	require.Positive(t, rec.Downtime)

	require.True(t, c.IsAlive())
	require.Equal(t, ConnOpen, c.State())
	select {
	case err := <-closes:
		t.Fatalf("NotifyClose fired for a recovered loss: %v", err)
	case <-c.Done():
		t.Fatal("Done closed for a recovered loss")
	default:
	}
	require.NoError(t, c.Err())

	// The same handles carry on.
	exchange(5)
	require.Equal(t, uint64(2), pub.Incarnation())
	require.Equal(t, uint64(2), idle.Incarnation(), "unused channels are reopened too")
	topo := c.Topology()
	require.Equal(t, rec.Renamed[0].New, topo.Queues[0].Name)
	require.Equal(t, rec.Renamed[0].New, topo.Bindings[0].Destination)
	require.Equal(t, rec.Renamed[0].New, topo.Consumers[0].Queue)
}

// dialProxied dials the broker through p with cfg (and the URI query q),
// closing the connection when the test ends.
func dialProxied(t *testing.T, p *faultProxy, q string, cfg Config) *Connection {
	t.Helper()
	return dialURL(t, p.URL(q), cfg)
}

// A cut connection is recovered; a black-holed one is found dead by
// heartbeats and recovered, its exclusive queue retried until the broker
// has noticed that our old connection, which held it, is gone.
func TestBrokerRecoveryNetworkFaults(t *testing.T) {
	for _, fault := range []string{"cut", "blackhole"} {
		t.Run(fault, func(t *testing.T) {
			ctx := brokerCtx(t)
			p := newFaultProxy(t, brokerAddr())
			c := dialProxied(t, p, "?heartbeat=1", Config{})
			events := watchRecovery(c)
			ch := newChannel(t, ctx, c)
			qn := testQueueName(t)
			_, err := ch.QueueDeclare(ctx, qn, QueueOptions{Exclusive: true})
			require.NoError(t, err)
			cons, err := ch.Consume(ctx, qn, ConsumeOptions{NoAck: true})
			require.NoError(t, err)
			pub := confirmChannel(t, ctx, c)
			publishConfirmed(t, ctx, pub, "", qn, Publishing{Body: []byte("before")})
			require.Equal(t, "before", string(receive(t, ctx, cons).Body))

			switch fault {
			case "cut":
				p.Cut()
			case "blackhole":
				p.Blackhole()
			}
			lost, _ := events.waitFor(t, RecoveryLost, 20*time.Second)
			switch fault {
			case "cut":
				require.ErrorIs(t, lost.Err, ErrConnectionLost)
			case "blackhole":
				require.ErrorIs(t, lost.Err, ErrHeartbeatTimeout, "heartbeats find the silent peer")
			}
			require.False(t, c.IsAlive())
			rec, _ := events.waitFor(t, RecoveryRecovered, 30*time.Second)
			require.Empty(t, rec.NotRestored, "the exclusive queue and its consumer came back")
			require.Equal(t, ConnOpen, c.State())

			publishConfirmed(t, ctx, pub, "", qn, Publishing{Body: []byte("after")})
			require.Equal(t, "after", string(receive(t, ctx, cons).Body))
		})
	}
}

// receive waits for the consumer's next delivery.
func receive(t *testing.T, ctx context.Context, cons *Consumer) Delivery {
	t.Helper()
	select {
	case d, ok := <-cons.Deliveries():
		require.True(t, ok, "consumer ended: %v", cons.Err())
		return d
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	return Delivery{}
}

// Work in flight at a loss: publishes the broker never saw resolve with
// ErrMaybeSent (never as confirmed, never re-sent), a request waiting for
// its reply fails with a recoverable error, a delivery from before the
// loss cannot be acked (the broker redelivers it), a transaction in
// progress is rolled back, and everything works again afterwards.
func TestBrokerRecoveryWorkInFlight(t *testing.T) {
	ctx := brokerCtx(t)
	p := newFaultProxy(t, brokerAddr())
	name := fmt.Sprintf("warren-test-inflight-%d", time.Now().UnixNano())
	c := dialProxied(t, p, "", Config{ConnectionName: name})
	events := watchRecovery(c)
	obs := newChannel(t, ctx, dialTest(t, Config{}))

	qn := testQueueName(t)
	ch := newChannel(t, ctx, c)
	_, err := ch.QueueDeclare(ctx, qn, QueueOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = obs.QueueDelete(context.Background(), qn, QueueDeleteOptions{}) })
	cons, err := ch.Consume(ctx, qn, ConsumeOptions{})
	require.NoError(t, err)
	pub := confirmChannel(t, ctx, c)
	tx := newChannel(t, ctx, c)
	require.NoError(t, tx.TxSelect(ctx))

	publishConfirmed(t, ctx, pub, "", qn, Publishing{Body: []byte("one")})
	first := receive(t, ctx, cons)
	require.False(t, first.Redelivered)
	require.NoError(t, tx.Publish(ctx, "", qn, Publishing{Body: []byte("in tx")}))

	// From here the broker hears nothing from us.
	p.HoldClient()
	var held []*Confirmation
	for i := range 3 {
		cf, err := pub.PublishWithConfirm(ctx, "", qn, Publishing{Body: []byte(fmt.Sprint("held ", i))})
		require.NoError(t, err)
		held = append(held, cf)
	}
	rpc := make(chan error, 1)
	go func() {
		_, err := obsQueueDeclare(ctx, ch, qn)
		rpc <- err
	}()
	rabbitmqctl(t, "close_connection", connectionPid(t, name), "in-flight test")

	for _, cf := range held {
		acked, err := cf.Wait(ctx)
		require.False(t, acked)
		require.ErrorIs(t, err, ErrMaybeSent)
		requireConnErr(t, err, ConnectionForced)
	}
	select {
	case err := <-rpc:
		require.Error(t, err)
		require.True(t, IsRecoverable(err), "a request cut short by the loss is worth retrying: %v", err)
	case <-ctx.Done():
		t.Fatal("the pending request never failed")
	}
	events.waitFor(t, RecoveryRecovered, 20*time.Second)

	// The delivery from before the loss is stale; the broker redelivers it.
	require.ErrorIs(t, first.Ack(false), ErrStaleDelivery)
	again := receive(t, ctx, cons)
	require.Equal(t, "one", string(again.Body))
	require.True(t, again.Redelivered)
	require.Greater(t, again.DeliveryTag, first.DeliveryTag)
	require.NoError(t, again.Ack(false))

	// The transaction was lost: commit says so and commits nothing.
	require.NoError(t, tx.Publish(ctx, "", qn, Publishing{Body: []byte("after loss, in tx")}))
	require.ErrorIs(t, tx.TxCommit(ctx), ErrTxRolledBack)
	require.NoError(t, tx.Publish(ctx, "", qn, Publishing{Body: []byte("tx retried")}))
	require.NoError(t, tx.TxCommit(ctx), "the channel is in tx mode again")

	// Nothing held was re-sent: the queue got only what was confirmed or
	// committed.
	publishConfirmed(t, ctx, pub, "", qn, Publishing{Body: []byte("two")})
	var got []string
	for len(got) < 2 {
		d := receive(t, ctx, cons)
		got = append(got, string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	require.ElementsMatch(t, []string{"tx retried", "two"}, got)
	select {
	case d := <-cons.Deliveries():
		t.Fatalf("unexpected delivery %q", d.Body)
	case <-time.After(200 * time.Millisecond):
	}
}

func obsQueueDeclare(ctx context.Context, ch *Channel, qn string) (Queue, error) {
	return ch.QueueDeclare(ctx, qn, QueueOptions{Passive: true})
}

// While the broker cannot be reached: calls wait (bounded by their
// contexts), FailFast calls fail at once, and Close stops the recovery
// at once, failing the waiting calls with ErrClosed and leaving no
// goroutine behind.
func TestBrokerRecoveryCloseWhileRecovering(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx := brokerCtx(t)
	p := newFaultProxy(t, brokerAddr())
	c := dialProxied(t, p, "", Config{Recovery: Recovery{Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}}})
	events := watchRecovery(c)
	closes := c.NotifyClose(make(chan error, 1))
	ch := newChannel(t, ctx, c)
	qn := testQueueName(t)
	_, err := ch.QueueDeclare(ctx, qn, QueueOptions{Exclusive: true})
	require.NoError(t, err)
	cons, err := ch.Consume(ctx, qn, ConsumeOptions{NoAck: true})
	require.NoError(t, err)

	p.Refuse(true)
	p.Cut()
	events.waitFor(t, RecoveryLost, 10*time.Second)
	events.waitFor(t, RecoveryRetrying, 10*time.Second)
	events.waitFor(t, RecoveryRetrying, 10*time.Second) // a second attempt: the first was refused
	require.Equal(t, ConnRecovering, c.State())
	require.False(t, c.IsAlive())

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = ch.Publish(short, "", qn, Publishing{})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "a publish waits for the recovery, within its context")

	waiting := make(chan error, 1)
	go func() { waiting <- ch.Publish(ctx, "", qn, Publishing{}) }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close(ctx))
	select {
	case err := <-waiting:
		require.ErrorIs(t, err, ErrClosed)
	case <-ctx.Done():
		t.Fatal("the waiting publish was not released by Close")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done is not closed after Close")
	}
	_, open := <-closes
	require.False(t, open, "a Close during recovery is a clean close: no error")
	requireEnded(t, cons)
	require.ErrorIs(t, cons.Err(), ErrClosed)
	require.Equal(t, ConnClosed, c.State())
	p.stop()
	goleak.VerifyNone(t, before)
}

func TestBrokerRecoveryFailFastAndGiveUp(t *testing.T) {
	ctx := brokerCtx(t)
	p := newFaultProxy(t, brokerAddr())
	c := dialProxied(t, p, "", Config{Recovery: Recovery{FailFast: true, MaxAttempts: 3,
		Backoff: Backoff{Initial: 30 * time.Millisecond, Max: 30 * time.Millisecond, NoJitter: true}}})
	events := watchRecovery(c)
	closes := c.NotifyClose(make(chan error, 1))
	ch := newChannel(t, ctx, c)
	cons, err := ch.Consume(ctx, "amq.rabbitmq.reply-to", ConsumeOptions{NoAck: true})
	require.NoError(t, err)

	p.Refuse(true)
	p.Cut()
	events.waitFor(t, RecoveryLost, 10*time.Second)
	require.ErrorIs(t, ch.Publish(ctx, "", "q", Publishing{}), ErrRecovering, "FailFast")
	_, err = c.Channel(ctx)
	require.ErrorIs(t, err, ErrRecovering)

	gave, skipped := events.waitFor(t, RecoveryGaveUp, 10*time.Second)
	require.Len(t, skipped, 3, "three attempts")
	for i, e := range skipped {
		require.Equal(t, RecoveryRetrying, e.Kind)
		require.Equal(t, i+1, e.Attempt)
		require.Equal(t, 30*time.Millisecond, e.Delay)
	}
	require.ErrorIs(t, gave.Err, ErrGaveUp)
	require.Equal(t, 3, gave.Attempt)
	select {
	case err := <-closes:
		require.ErrorIs(t, err, ErrGaveUp, "the end is reported once, when recovery gives up")
	case <-ctx.Done():
		t.Fatal("no close notification")
	}
	<-c.Done()
	require.ErrorIs(t, c.Err(), ErrGaveUp)
	requireEnded(t, cons)
	require.ErrorIs(t, cons.Err(), ErrGaveUp)
	require.ErrorIs(t, ch.Publish(ctx, "", "q", Publishing{}), ErrClosed)
	_, open := <-events.ch
	require.False(t, open, "the recovery events end with the connection")
}

// What cannot be restored is reported and ends alone: a consumer whose
// queue was deleted during the outage ends with ErrNotRestored while the
// consumer before it on the same channel carries on; the filter leaves
// out what it is told to.
func TestBrokerRecoveryNotRestored(t *testing.T) {
	ctx := brokerCtx(t)
	p := newFaultProxy(t, brokerAddr())
	obs := newChannel(t, ctx, dialTest(t, Config{}))
	base := testQueueName(t)
	kept, gone := base+".kept", base+".gone"
	for _, q := range []string{kept, gone} {
		_, err := obs.QueueDeclare(ctx, q, QueueOptions{})
		require.NoError(t, err)
		deleteQueueAfter(t, q) // over a connection of its own: obs's are closed by then
	}
	c := dialProxied(t, p, "", Config{Recovery: Recovery{Filter: TopologyFilter{
		Queue:    func(q DeclaredQueue) bool { return q.Name != base+".filtered" },
		Consumer: func(c DeclaredConsumer) bool { return c.Tag != "left-out" },
	}}})
	events := watchRecovery(c)
	ch := newChannel(t, ctx, c)
	consKept, err := ch.Consume(ctx, kept, ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	consGone, err := ch.Consume(ctx, gone, ConsumeOptions{NoAck: true})
	require.NoError(t, err)
	consLeft, err := ch.Consume(ctx, kept, ConsumeOptions{NoAck: true, ConsumerTag: "left-out"})
	require.NoError(t, err)
	_, err = ch.QueueDeclare(ctx, base+".filtered", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	p.Refuse(true)
	p.Cut()
	events.waitFor(t, RecoveryLost, 10*time.Second)
	_, err = obs.QueueDelete(ctx, gone, QueueDeleteOptions{})
	require.NoError(t, err)
	p.Refuse(false)
	rec, _ := events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.Len(t, rec.NotRestored, 1, "%v", rec.NotRestored)
	require.Contains(t, rec.NotRestored[0].What, gone)
	require.ErrorIs(t, rec.NotRestored[0].Err, NotFound)

	requireEnded(t, consGone)
	require.ErrorIs(t, consGone.Err(), ErrNotRestored)
	require.ErrorIs(t, consGone.Err(), NotFound)
	requireEnded(t, consLeft)
	require.ErrorIs(t, consLeft.Err(), ErrNotRestored)

	_, err = obs.QueueDeclare(ctx, base+".filtered", QueueOptions{Passive: true})
	requireChannelErr(t, err, NotFound)
	obs = newChannel(t, ctx, dialTest(t, Config{})) // the 404 closed obs's channel for good: a fresh one
	publishConfirmed(t, ctx, confirmChannel(t, ctx, c), "", kept, Publishing{Body: []byte("still here")})
	require.Equal(t, "still here", string(receive(t, ctx, consKept).Body))
	require.Equal(t, []string{consKept.Tag}, consumerTags(c.Topology()))
}

func consumerTags(t Topology) []string {
	var tags []string
	for _, c := range t.Consumers {
		tags = append(tags, c.Tag)
	}
	return tags
}

// Several addresses: the first dial skips a dead one, and a recovery
// fails over to the next address when the current one goes away.
func TestBrokerRecoveryFailover(t *testing.T) {
	ctx := brokerCtx(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "amqp://guest:guest@" + dead.Addr().String() + "/"
	dead.Close() // nothing listens there now
	a, b := newFaultProxy(t, brokerAddr()), newFaultProxy(t, brokerAddr())

	conn, err := DialAny(ctx, []string{deadURL, a.URL(""), b.URL("")}, DialOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	red := func(uri string) string {
		u, err := ParseURI(uri)
		require.NoError(t, err)
		return u.Redacted()
	}
	require.Equal(t, red(a.URL("")), conn.Address(), "credentials redacted")
	require.NotContains(t, conn.Address(), "guest@")
	events := watchRecovery(conn)
	ch := confirmChannel(t, ctx, conn)

	a.Refuse(true)
	a.Cut()
	rec, skipped := events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.Equal(t, red(b.URL("")), rec.Address)
	require.Equal(t, red(b.URL("")), conn.Address())
	var tried []string
	for _, e := range skipped {
		if e.Kind == RecoveryRetrying {
			tried = append(tried, e.Address)
		}
	}
	require.Equal(t, []string{red(deadURL), red(a.URL("")), red(b.URL(""))}, tried, "each recovery walks the list in order")
	_, err = confirmPublish(ctx, ch, "", "no-such-queue", Publishing{})
	require.NoError(t, err)

	_, err = DialAny(ctx, []string{brokerURLWith(t, "guest:wrong", "/", ""), a.URL("")}, DialOptions{})
	require.ErrorIs(t, err, AccessRefused, "refused credentials fail the first dial at once")
	_, err = DialAny(ctx, nil, DialOptions{})
	require.Error(t, err)
}
