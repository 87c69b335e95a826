package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/extest"
	"github.com/warren-amqp/warren/proto"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/work-queues") }

// received lists the tasks a worker printed as received.
func received(out string) []string {
	var tasks []string
	for _, line := range strings.Split(out, "\n") {
		if task, ok := strings.CutPrefix(line, " [x] Received "); ok {
			tasks = append(tasks, task)
		}
	}
	return tasks
}

// Two workers share eight tasks: each task is done exactly once, and with
// prefetch 1 both workers get some.
func TestBrokerTwoWorkersShareTasks(t *testing.T) {
	q := extest.Name(t, "tasks")
	extest.DeleteQueues(t, q)
	url := extest.URL()

	w1 := extest.Start(t, run, "--url", url, "--role", "worker", "--queue", q, "--dot", "50ms")
	w2 := extest.Start(t, run, "--url", url, "--role", "worker", "--queue", q, "--dot", "50ms")
	w1.WaitFor(t, "Waiting for messages", 1, 10*time.Second)
	w2.WaitFor(t, "Waiting for messages", 1, 10*time.Second)

	out, err := extest.Run(run, "--url", url, "--role", "new_task", "--queue", q, "--count", "8", "task..")
	require.NoError(t, err)
	require.Equal(t, 8, strings.Count(out, " [x] Sent task.. #"))

	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(w1.Out.String(), "Done")+strings.Count(w2.Out.String(), "Done") < 8 {
		require.True(t, time.Now().Before(deadline), "tasks not done:\n%s\n%s", w1.Out.String(), w2.Out.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, w1.Stop())
	require.NoError(t, w2.Stop())

	got1, got2 := received(w1.Out.String()), received(w2.Out.String())
	require.NotEmpty(t, got1, "worker 1 got no task")
	require.NotEmpty(t, got2, "worker 2 got no task")
	var want []string
	for i := 1; i <= 8; i++ {
		want = append(want, fmt.Sprintf("task.. #%d", i))
	}
	require.ElementsMatch(t, want, append(got1, got2...))
	require.Equal(t, 0, extest.Queue(t, q).Messages)
}

// The queue is durable and the tasks persistent.
func TestBrokerDurableAndPersistent(t *testing.T) {
	q := extest.Name(t, "tasks")
	extest.DeleteQueues(t, q)
	_, err := extest.Run(run, "--url", extest.URL(), "--role", "new_task", "--queue", q, "one", "task.")
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, extest.URL())
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(ctx)) }()
	ch, err := conn.Channel(ctx)
	require.NoError(t, err)
	d, ok, err := ch.Get(ctx, q, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "one task.", string(d.Body))
	require.Equal(t, proto.Persistent, d.Properties.DeliveryMode)
	// Declaring it again as non-durable is refused: it is durable.
	_, err = ch.QueueDeclare(ctx, q, warren.QueueOptions{})
	require.True(t, errors.Is(err, warren.PreconditionFailed), "got %v", err)
}

// A worker stopped mid-task leaves the task unacknowledged, so it goes
// back to the queue; --count stops a worker after that many tasks.
func TestBrokerInterruptedTaskReturns(t *testing.T) {
	q := extest.Name(t, "tasks")
	extest.DeleteQueues(t, q)
	url := extest.URL()
	_, err := extest.Run(run, "--url", url, "--role", "new_task", "--queue", q, "slow.")
	require.NoError(t, err)

	w := extest.Start(t, run, "--url", url, "--role", "worker", "--queue", q, "--dot", "1h")
	w.WaitFor(t, " [x] Received slow.\n", 1, 10*time.Second)
	require.NoError(t, w.Stop())
	require.Contains(t, w.Out.String(), " [!] Interrupted: slow. goes back to the queue")
	require.NotContains(t, w.Out.String(), "Done")
	require.Equal(t, 1, extest.Queue(t, q).Messages)

	out, err := extest.Run(run, "--url", url, "--role", "worker", "--queue", q, "--dot", "1ms", "--count", "1")
	require.NoError(t, err)
	require.Contains(t, out, " [x] Received slow.\n [x] Done\n")
	require.Equal(t, 0, extest.Queue(t, q).Messages)
}
