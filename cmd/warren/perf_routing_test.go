package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// perfJSON runs perf with --json against the broker and decodes the
// summary.
func perfJSON(t *testing.T, args ...string) perfSummary {
	t.Helper()
	r := cli(t, "", append([]string{"perf", "--json"}, args...)...)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	var sum perfSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	require.True(t, sum.OK, r.stderr)
	require.Empty(t, sum.Errors)
	return sum
}

// requireQueueTotals checks that the per-queue counts add up to the
// run's, for a run where every message reaches exactly one queue.
func requireQueueTotals(t *testing.T, sum perfSummary) {
	t.Helper()
	var sent, received, consumed, expected uint64
	for _, q := range sum.Queues {
		require.Positive(t, q.Sent, q.Name)
		require.Positive(t, q.Received, q.Name)
		require.Equal(t, q.Expected, q.Consumed, q.Name)
		require.Zero(t, q.Missing, q.Name)
		require.Zero(t, q.Duplicates, q.Name)
		sent += q.Sent
		received += q.Received
		consumed += q.Consumed
		expected += q.Expected
	}
	require.Equal(t, sum.Sent, sent)
	require.Equal(t, sum.Received, received)
	require.Equal(t, sum.Consumed, consumed)
	require.Equal(t, sum.Expected, expected)
	require.Equal(t, sum.Confirmed, sum.Consumed)
}

// requireGone checks that perf left neither the queues nor the exchange.
func requireGone(t *testing.T, sum perfSummary, exchange string) {
	t.Helper()
	for _, q := range sum.Queues {
		r := cli(t, "", "declare", "queue", q.Name, "--passive")
		require.Equal(t, exitFailure, r.code, "queue %s left behind", q.Name)
	}
	if exchange != "" {
		r := cli(t, "", "declare", "exchange", exchange, "--passive")
		require.Equal(t, exitFailure, r.code, "exchange %s left behind", exchange)
	}
}

func TestPerfTwoQueuesDirectExchange(t *testing.T) {
	x := uniqueName(t, "x")
	sum := perfJSON(t, "--count", "2000", "--queues", "2", "--consumers", "2",
		"--exchange", x, "--routing-key", "red", "--routing-key", "blue")
	require.Equal(t, x, sum.Exchange)
	require.Equal(t, "direct", sum.ExchangeType)
	require.True(t, sum.ExchangeDeclared)
	require.Len(t, sum.Queues, 2)
	require.Equal(t, []string{"red"}, sum.Queues[0].RoutingKeys)
	require.Equal(t, []string{"blue"}, sum.Queues[1].RoutingKeys)
	require.Equal(t, uint64(2000), sum.Sent)
	require.Equal(t, uint64(1000), sum.Queues[0].Sent) // the keys in turn
	requireQueueTotals(t, sum)
	requireGone(t, sum, x)
}

// Through the default exchange each producer has its queue (the producers
// share --count: --rate makes each take a part); the text
// summary has a line per queue.
func TestPerfQueuesDefaultExchange(t *testing.T) {
	r := cli(t, "", "perf", "--count", "600", "--rate", "3000", "--queues", "3", "--producers", "3", "--consumers", "3", "--json") // the rate shares the count out
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	var sum perfSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	require.True(t, sum.OK)
	require.Len(t, sum.Queues, 3)
	for i, q := range sum.Queues {
		require.Equal(t, sum.Queue+"-"+string(rune('0'+i)), q.Name)
		require.Equal(t, 1, q.Producers)
		require.Equal(t, 1, q.Consumers)
	}
	requireQueueTotals(t, sum)
	require.Contains(t, r.stderr, "3 queues "+sum.Queue+"-0…2")
	require.Contains(t, r.stderr, "  queue      "+sum.Queue+"-1: sent ")
	requireGone(t, sum, "")
}

// Fanout: every message reaches every queue, counted in each.
func TestPerfFanoutCountsEachCopy(t *testing.T) {
	x := uniqueName(t, "x")
	sum := perfJSON(t, "--count", "600", "--queues", "2", "--consumers", "2", "--exchange", x, "--exchange-type", "fanout")
	for _, q := range sum.Queues {
		require.Equal(t, uint64(600), q.Sent)
		require.Equal(t, uint64(600), q.Consumed)
	}
	require.Equal(t, uint64(1200), sum.Expected)
	require.Equal(t, uint64(1200), sum.Received)
	requireGone(t, sum, x)
}

// An existing exchange and queues of the user's: perf keeps both and
// removes only the bindings it made (a mandatory publish with the key is
// then unroutable).
func TestPerfExistingExchangeAndQueuesKeepsThemUnbinds(t *testing.T) {
	prefix := uniqueName(t, "q")
	t.Cleanup(func() {
		cli(t, "", "delete", "queue", prefix+"-0")
		cli(t, "", "delete", "queue", prefix+"-1")
	})
	key := uniqueName(t, "key")
	sum := perfJSON(t, "--count", "500", "--queues", "2", "--consumers", "2", "--queue", prefix,
		"--exchange", "amq.topic", "--routing-key", key+".a", "--routing-key", key+".*")
	require.Equal(t, "topic", sum.ExchangeType)
	require.False(t, sum.ExchangeDeclared)
	require.Equal(t, uint64(250), sum.Queues[0].Sent) // only key.a
	require.Equal(t, uint64(500), sum.Queues[1].Sent) // key.* matches both
	require.Equal(t, uint64(750), sum.Consumed)
	for _, q := range sum.Queues {
		cli(t, "", "declare", "queue", q.Name, "--passive").ok(t)
	}
	r := cli(t, "", "publish", "--exchange", "amq.topic", "--routing-key", key+".a", "--mandatory", "x")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "NO_ROUTE")
}

func TestPerfRoutingUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--queues", "0"}, "--queues must be at least 1"},
		{[]string{"--queues", "2", "--producers", "2", "--consumers", "1"}, "every queue needs a consumer"},
		{[]string{"--queues", "2", "--consumers", "2"}, "each producer publishes to one queue"},
		{[]string{"--routing-key", "k"}, "--routing-key needs --exchange"},
		{[]string{"--exchange-type", "topic"}, "--exchange-type needs --exchange"},
		{[]string{"--exchange", "x", "--exchange-type", "headers"}, "want direct, topic or fanout"},
		{[]string{"--exchange", "amq.headers"}, "not headers"},
		{[]string{"--exchange", "amq.topic", "--exchange-type", "fanout"}, "amq.topic is a topic exchange, not fanout"},
		{[]string{"--exchange", "amq.default"}, "leave --exchange out"},
	} {
		r := cliNoURL(t, "", append([]string{"perf"}, tc.args...)...)
		require.Equal(t, exitUsage, r.code, "%q: %s", tc.args, r.stderr)
		require.Contains(t, oneLine(t, r.stderr), tc.want, "%q", tc.args)
		require.Empty(t, r.stdout)
	}
}

func TestTopicMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a", false},
		{"a.*", "a.b.c", false},
		{"a.#", "a", true},
		{"a.#", "a.b.c", true},
		{"#", "", true},
		{"#", "x.y", true},
		{"#.c", "a.b.c", true},
		{"*.b.#", "a.b", true},
		{"*.b.#", "b", false},
		{"", "", true},
		{"", "a", false},
	} {
		got := topicMatch(strings.Split(tc.pattern, "."), strings.Split(tc.key, "."))
		require.Equal(t, tc.want, got, "%q %q", tc.pattern, tc.key)
	}
}

// perf's connections trace with their role.
func TestPerfTraceNamesTheConnections(t *testing.T) {
	r := cli(t, "", "perf", "--count", "3", "--trace")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{
		"warren perf: trace [control] -> ch 1 queue.declare {",
		"warren perf: trace [producer 0] -> ch 1 basic.publish {",
		"warren perf: trace [consumer 0] <- ch 1 basic.deliver {",
		"warren perf: trace [control] -> ch 1 queue.delete {",
	} {
		require.Contains(t, r.stderr, want)
	}
}
