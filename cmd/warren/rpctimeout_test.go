package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/scripted"
	"github.com/warren-amqp/warren/proto/frames"
)

// scriptedServer starts a scripted AMQP server for one test.
func scriptedServer(t *testing.T, opts scripted.Options) *scripted.Server {
	t.Helper()
	s, err := scripted.Listen(opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// answerOnly answers the listed methods (and the handshake) and does what
// otherwise says with every other.
func answerOnly(otherwise scripted.Action, names ...string) func(frames.Method) scripted.Action {
	return func(m frames.Method) scripted.Action {
		for _, n := range names {
			if m.Key().String() == n {
				return scripted.Answer
			}
		}
		return otherwise
	}
}

// Every subcommand bounds every broker round trip by --rpc-timeout (and
// consume's wait for consume-ok by --timeout too): against a server that
// never answers, or stops reading, each exits 1 with one line naming what
// went unanswered, within the bound.
func TestEveryRoundTripIsBounded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string // the method named in the error
	}{
		{[]string{"declare", "queue", "q"}, "queue.declare"},
		{[]string{"declare", "exchange", "x"}, "exchange.declare"},
		{[]string{"bind", "--queue", "q", "--exchange", "x"}, "queue.bind"},
		{[]string{"unbind", "--queue", "q", "--exchange", "x"}, "queue.unbind"},
		{[]string{"bind", "--destination-exchange", "d", "--exchange", "x"}, "exchange.bind"},
		{[]string{"unbind", "--destination-exchange", "d", "--exchange", "x"}, "exchange.unbind"},
		{[]string{"delete", "queue", "q"}, "queue.delete"},
		{[]string{"delete", "exchange", "x"}, "exchange.delete"},
		{[]string{"purge", "--queue", "q"}, "queue.purge"},
		{[]string{"get", "--queue", "q"}, "basic.get"},
		{[]string{"consume", "--queue", "q"}, "basic.consume"},
		{[]string{"consume", "--queue", "q", "--no-ack", "--timeout", "500ms"}, "basic.consume within 500ms"},
		{[]string{"publish", "--routing-key", "q", "--confirm", "body"}, "confirm.select"},
		{[]string{"publish", "--routing-key", "q", "body"}, "basic.qos"}, // the closing round trip
		{[]string{"perf", "--duration", "1s"}, "queue.declare"},
	}
	for _, fault := range []struct {
		name   string
		action scripted.Action
	}{{"never answers", scripted.Ignore}, {"stops reading", scripted.StopReading}} {
		t.Run(fault.name, func(t *testing.T) {
			t.Parallel()
			// channel.open is answered, and basic.qos for consume (its
			// prefetch comes before basic.consume).
			s := scriptedServer(t, scripted.Options{Script: func(m frames.Method) scripted.Action {
				if _, ok := m.(*frames.BasicQos); ok {
					return scripted.Answer // (publish's closing qos is caught by basic.consume's absence below)
				}
				return answerOnly(fault.action, "channel.open")(m)
			}})
			for _, tc := range cases {
				if tc.want == "basic.qos" {
					continue // answered by this server: see the next test
				}
				start := time.Now()
				r := cliNoURL(t, "", append(tc.args, "--url", s.URL(), "--rpc-timeout", "1s")...)
				elapsed := time.Since(start)
				require.Equal(t, exitFailure, r.code, "%q: stdout %q, stderr %q", tc.args, r.stdout, r.stderr)
				line := oneLine(t, r.stderr)
				require.Contains(t, line, "no answer from the broker to "+tc.want, "%q", tc.args)
				// The request's bound, then the close handshake's.
				require.Less(t, elapsed, 8*time.Second, "%q", tc.args)
			}
		})
	}
	t.Run("publish's closing round trip", func(t *testing.T) {
		t.Parallel()
		s := scriptedServer(t, scripted.Options{Script: answerOnly(scripted.Ignore, "channel.open")})
		r := cliNoURL(t, "", "publish", "--routing-key", "q", "body", "--url", s.URL(), "--rpc-timeout", "1s")
		require.Equal(t, exitFailure, r.code)
		line := oneLine(t, r.stderr)
		require.Contains(t, line, "no answer from the broker to basic.qos within 1s")
		require.Contains(t, line, "1 message(s) were handed to the broker (they may be lost)")
	})
}

// A broker that blocks the connection for good, or stops reading in the
// middle of a stream of publishes: publish and perf end once a message
// waited --rpc-timeout to go out, saying why.
func TestPublishBoundedWhenTheBrokerTakesNothing(t *testing.T) {
	t.Parallel()
	blocked := scriptedServer(t, scripted.Options{BlockAfterOpen: true})
	r := cliNoURL(t, "", "publish", "--routing-key", "q", "--confirm", "body",
		"--url", blocked.URL(), "--rpc-timeout", "1s", "--recovery-timeout", "0")
	require.Equal(t, exitFailure, r.code)
	line := oneLine(t, r.stderr)
	require.Contains(t, line, "the broker did not take a message within 1s: the broker blocks the connection")

	// Publishes without confirms fill the socket of a server that stopped
	// reading after the first.
	stopped := scriptedServer(t, scripted.Options{Script: answerOnly(scripted.StopReading, "channel.open")})
	body := strings.Repeat("x", 1<<20)
	r = cliNoURL(t, body, "publish", "--routing-key", "q", "--count", "200",
		"--url", stopped.URL(), "--rpc-timeout", "1s", "--recovery-timeout", "0")
	require.Equal(t, exitFailure, r.code)
	line = oneLine(t, r.stderr)
	require.Contains(t, line, "the broker did not take a message within 1s: the connection takes no more bytes")
	require.Contains(t, line, "may be lost")

	r = cliNoURL(t, "", "perf", "--duration", "30s", "--drain-timeout", "1s", "--json",
		"--url", blocked.URL(), "--rpc-timeout", "1s", "--recovery-timeout", "0")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "producer 0: the broker did not take a message within 1s: the broker blocks the connection")
}

func TestRPCTimeoutMustBePositive(t *testing.T) {
	r := cliNoURL(t, "", "declare", "queue", "q", "--rpc-timeout", "0s")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, oneLine(t, r.stderr), "--rpc-timeout must be positive")
}
