package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/publish-subscribe") }

// Every receiver gets every line; a line emitted before any receiver is
// bound reaches nobody; the receivers' queues go with them.
func TestBrokerFanout(t *testing.T) {
	x := extest.Name(t, "logs")
	extest.DeleteExchanges(t, x)
	url := extest.URL()

	out, err := extest.Run(run, "--url", url, "--role", "emit_log", "--exchange", x, "lost: nobody listens")
	require.NoError(t, err)
	require.Equal(t, " [x] Sent lost: nobody listens\n", out)

	r1 := extest.Start(t, run, "--url", url, "--role", "receive_logs", "--exchange", x, "--count", "3")
	r2 := extest.Start(t, run, "--url", url, "--role", "receive_logs", "--exchange", x, "--count", "3")
	r1.WaitFor(t, "Waiting for logs", 1, 10*time.Second)
	r2.WaitFor(t, "Waiting for logs", 1, 10*time.Second)

	out, err = extest.Run(run, "--url", url, "--role", "emit_log", "--exchange", x)
	require.NoError(t, err)
	require.Equal(t, " [x] Sent info: Hello World!\n", out)
	_, err = extest.Run(run, "--url", url, "--role", "emit_log", "--exchange", x, "--count", "2", "warning:", "disk", "80%", "full")
	require.NoError(t, err)

	want := " [*] Waiting for logs. To exit press CTRL+C\n [x] info: Hello World!\n" +
		strings.Repeat(" [x] warning: disk 80% full\n", 2)
	for _, r := range []*extest.Program{r1, r2} {
		require.NoError(t, r.Wait(20*time.Second))
		require.Equal(t, want, r.Out.String())
	}
}
