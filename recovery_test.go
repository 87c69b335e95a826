package warren

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
