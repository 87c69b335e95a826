package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/topics") }

// Binding keys with "*" and "#" select the lines; a line matching two
// binding keys of one receiver arrives there once; a line matching none is
// returned to the emitter, which says so.
func TestBrokerTopicRouting(t *testing.T) {
	x := extest.Name(t, "topic_logs")
	extest.DeleteExchanges(t, x)
	url := extest.URL()

	kern := extest.Start(t, run, "--url", url, "--role", "receive_logs_topic", "--exchange", x, "--count", "2", "kern.*")
	critical := extest.Start(t, run, "--url", url, "--role", "receive_logs_topic", "--exchange", x, "--count", "4", "*.critical", "kern.#")
	lazy := extest.Start(t, run, "--url", url, "--role", "receive_logs_topic", "--exchange", x, "--count", "2", "lazy.#")
	for _, r := range []*extest.Program{kern, critical, lazy} {
		r.WaitFor(t, "Waiting for logs", 1, 10*time.Second)
	}

	emit := func(key, message, want string) {
		t.Helper()
		out, err := extest.Run(run, "--url", url, "--role", "emit_log_topic", "--exchange", x, "--key", key, message)
		require.NoError(t, err)
		require.Equal(t, want, out)
	}
	emit("kern.critical", "A critical kernel error", " [x] Sent kern.critical:A critical kernel error\n")
	emit("kern.info", "booted", " [x] Sent kern.info:booted\n")
	emit("cron.critical", "no space", " [x] Sent cron.critical:no space\n")
	emit("kern.disk.warning", "slow", " [x] Sent kern.disk.warning:slow\n") // kern.* wants exactly one more word
	emit("quick.orange.fox", "jumps", " [!] quick.orange.fox:jumps was not routed (312 NO_ROUTE)\n")
	emit("lazy", "nap", " [x] Sent lazy:nap\n") // "#" may stand for no word at all
	emit("lazy.orange.rabbit", "hop", " [x] Sent lazy.orange.rabbit:hop\n")

	const waiting = " [*] Waiting for logs. To exit press CTRL+C\n"
	require.NoError(t, kern.Wait(20*time.Second))
	require.Equal(t, waiting+" [x] kern.critical:A critical kernel error\n [x] kern.info:booted\n", kern.Out.String())
	require.NoError(t, critical.Wait(20*time.Second))
	require.Equal(t, waiting+" [x] kern.critical:A critical kernel error\n [x] kern.info:booted\n"+
		" [x] cron.critical:no space\n [x] kern.disk.warning:slow\n", critical.Out.String())
	require.NoError(t, lazy.Wait(20*time.Second))
	require.Equal(t, waiting+" [x] lazy:nap\n [x] lazy.orange.rabbit:hop\n", lazy.Out.String())
}

func TestReceiverNeedsBindingKeys(t *testing.T) {
	_, err := extest.Run(run, "--role", "receive_logs_topic")
	require.ErrorContains(t, err, "needs binding keys")
}
