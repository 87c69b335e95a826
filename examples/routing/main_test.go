package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/routing") }

// Each receiver gets the severities it bound and no other; a severity no
// one bound is returned to the emitter, which says so.
func TestBrokerRoutingBySeverity(t *testing.T) {
	x := extest.Name(t, "direct_logs")
	extest.DeleteExchanges(t, x)
	url := extest.URL()

	problems := extest.Start(t, run, "--url", url, "--role", "receive_logs_direct", "--exchange", x, "--count", "3", "warning", "error")
	everything := extest.Start(t, run, "--url", url, "--role", "receive_logs_direct", "--exchange", x, "--count", "4", "info", "warning", "error")
	problems.WaitFor(t, "Waiting for logs", 1, 10*time.Second)
	everything.WaitFor(t, "Waiting for logs", 1, 10*time.Second)

	for _, tc := range []struct{ severity, message, want string }{
		{"info", "started", " [x] Sent info:started\n"},
		{"warning", "disk 80% full", " [x] Sent warning:disk 80% full\n"},
		{"debug", "x=1", " [!] debug:x=1 was not routed (312 NO_ROUTE)\n"},
		{"error", "disk full", " [x] Sent error:disk full\n [x] Sent error:disk full\n"},
	} {
		count := "1"
		if tc.severity == "error" {
			count = "2"
		}
		out, err := extest.Run(run, "--url", url, "--role", "emit_log_direct", "--exchange", x, "--count", count, "--severity", tc.severity, tc.message)
		require.NoError(t, err)
		require.Equal(t, tc.want, out)
	}

	require.NoError(t, problems.Wait(20*time.Second))
	require.Equal(t, " [*] Waiting for logs. To exit press CTRL+C\n"+
		" [x] warning:disk 80% full\n [x] error:disk full\n [x] error:disk full\n", problems.Out.String())
	require.NoError(t, everything.Wait(20*time.Second))
	require.Equal(t, " [*] Waiting for logs. To exit press CTRL+C\n"+
		" [x] info:started\n [x] warning:disk 80% full\n [x] error:disk full\n [x] error:disk full\n", everything.Out.String())
}

func TestReceiverNeedsSeverities(t *testing.T) {
	_, err := extest.Run(run, "--role", "receive_logs_direct")
	require.ErrorContains(t, err, "needs severities")
}
