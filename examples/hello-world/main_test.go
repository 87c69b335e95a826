package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/hello-world") }

// The sender runs first (declaring the queue), then the receiver takes
// the messages waiting there.
func TestBrokerSendThenReceive(t *testing.T) {
	q := extest.Name(t, "q")
	extest.DeleteQueues(t, q)
	url := extest.URL()

	out, err := extest.Run(run, "--url", url, "--role", "send", "--queue", q, "--count", "3", "--message", "hi there")
	require.NoError(t, err)
	require.Equal(t, strings.Repeat(" [x] Sent hi there\n", 3), out)

	out, err = extest.Run(run, "--url", url, "--role", "receive", "--queue", q, "--count", "3", "--duration", "20s")
	require.NoError(t, err)
	require.Equal(t, " [*] Waiting for messages. To exit press CTRL+C\n"+strings.Repeat(" [x] Received hi there\n", 3), out)
	require.Equal(t, 0, extest.Queue(t, q).Messages)
}

// A receiver started first waits for the message; stopping it (Ctrl-C)
// is a clean exit.
func TestBrokerReceiveThenSend(t *testing.T) {
	q := extest.Name(t, "q")
	extest.DeleteQueues(t, q)
	url := extest.URL()

	recv := extest.Start(t, run, "--url", url, "--role", "receive", "--queue", q)
	recv.WaitFor(t, "Waiting for messages", 1, 10*time.Second)
	_, err := extest.Run(run, "--url", url, "--role", "send", "--queue", q)
	require.NoError(t, err)
	recv.WaitFor(t, " [x] Received Hello World!\n", 1, 10*time.Second)
	require.NoError(t, recv.Stop())
}

// --duration ends a receiver that gets nothing, without an error.
func TestBrokerReceiveDuration(t *testing.T) {
	q := extest.Name(t, "q")
	extest.DeleteQueues(t, q)
	start := time.Now()
	out, err := extest.Run(run, "--url", extest.URL(), "--role", "receive", "--queue", q, "--duration", "300ms")
	require.NoError(t, err)
	require.NotContains(t, out, "Received")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestBadFlags(t *testing.T) {
	_, err := extest.Run(run, "--role", "shout")
	require.ErrorContains(t, err, "--role must be send or receive")
	_, err = extest.Run(run, "--role", "send", "extra")
	require.ErrorContains(t, err, "unexpected arguments")
}

// A broker that is not there is an error, not a hang.
func TestNoBroker(t *testing.T) {
	_, err := extest.Run(run, "--url", "amqp://guest:guest@127.0.0.1:1/", "--role", "send")
	require.ErrorContains(t, err, "connecting")
}
