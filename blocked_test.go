//go:build brokerglobal

// Tests that change broker-wide state (the memory alarm). They run only
// with -tags brokerglobal, in their own serial step of .ci/run, which also
// restores the watermark if the test binary is killed.

package warren

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// watermarkArgs reads the broker's memory high watermark and returns the
// rabbitmqctl arguments that set it back.
func watermarkArgs(t *testing.T) []string {
	out := rabbitmqctl(t, "eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	v := strings.TrimSpace(lines[len(lines)-1])
	if m := regexp.MustCompile(`^\{absolute,\s*(\d+)\}$`).FindStringSubmatch(v); m != nil {
		return []string{"set_vm_memory_high_watermark", "absolute", m[1]}
	}
	require.Regexp(t, `^[0-9.]+$`, v, "unexpected watermark %q", v)
	return []string{"set_vm_memory_high_watermark", v}
}

// connection.blocked: RabbitMQ blocks a connection once it publishes during
// a memory alarm. Later publishes then wait (honouring their context) and
// resume when the alarm clears.
func TestBrokerGlobalBlocked(t *testing.T) {
	restore := watermarkArgs(t)
	t.Cleanup(func() { rabbitmqctl(t, restore...) }) // also restored by .ci/run if the test binary dies
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	c := dialTest(t, Config{})
	blocking := c.NotifyBlocked(make(chan Blocking, 4))
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	rabbitmqctl(t, "set_vm_memory_high_watermark", "0.0000001")
	// One publish during the alarm makes the broker block us.
	require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("trigger")}))
	select {
	case b := <-blocking:
		require.True(t, b.Active)
		require.NotEmpty(t, b.Reason)
	case <-ctx.Done():
		t.Fatal("no connection.blocked")
	}
	require.True(t, c.Blocked())

	// A publish now waits, and gives up when its context ends.
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	err = ch.Publish(short, "", q.Name, Publishing{Body: []byte("waits")})
	cancelShort()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// One with time to spare resumes when the alarm clears.
	done := make(chan error, 1)
	go func() { done <- ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("resumes")}) }()
	select {
	case err := <-done:
		t.Fatalf("publish returned while blocked: %v", err)
	case <-time.After(time.Second):
	}
	rabbitmqctl(t, restore...)
	require.NoError(t, <-done)
	select {
	case b := <-blocking:
		require.False(t, b.Active)
	case <-ctx.Done():
		t.Fatal("no connection.unblocked")
	}
	require.False(t, c.Blocked())

	// Both the trigger and the resumed publish reached the queue.
	require.Eventually(t, func() bool {
		q2, err := ch.QueueDeclare(ctx, q.Name, QueueOptions{Passive: true})
		return err == nil && q2.Messages == 2
	}, 10*time.Second, 50*time.Millisecond)
}

// The blocked state resets on a loss: the listeners hear unblocked, the
// recovered connection starts unblocked, and the broker blocks it again
// when it publishes while the alarm persists.
func TestBrokerGlobalBlockedResetsOnRecovery(t *testing.T) {
	restore := watermarkArgs(t)
	t.Cleanup(func() { rabbitmqctl(t, restore...) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	name := testQueueName(t) // unique: the connection's name
	c := dialURL(t, brokerURL(), Config{ConnectionName: name, Recovery: Recovery{Backoff: Backoff{Initial: 50 * time.Millisecond}}})
	events := watchRecovery(c)
	blocking := c.NotifyBlocked(make(chan Blocking, 8))
	ch := newChannel(t, ctx, c)
	next := func() Blocking {
		t.Helper()
		select {
		case b := <-blocking:
			return b
		case <-ctx.Done():
			t.Fatal("no blocked or unblocked notification")
			return Blocking{}
		}
	}
	trigger := func() {
		t.Helper()
		short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
		defer cancelShort()
		require.NoError(t, ch.Publish(short, "", "warren.nowhere", Publishing{Body: []byte("trigger")}))
	}

	rabbitmqctl(t, "set_vm_memory_high_watermark", "0.0000001")
	trigger()
	require.True(t, next().Active)
	require.True(t, c.Blocked())

	rabbitmqctl(t, "close_connection", connectionPid(t, name), "blocked test")
	events.waitFor(t, RecoveryLost, 10*time.Second)
	b := next()
	require.False(t, b.Active, "the loss unblocks the listeners")
	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.False(t, c.Blocked(), "a recovered connection starts unblocked")

	trigger() // the alarm persists: the broker blocks the new connection
	require.True(t, next().Active)
	require.True(t, c.Blocked())
	rabbitmqctl(t, restore...)
	require.False(t, next().Active)
	require.False(t, c.Blocked())
}
