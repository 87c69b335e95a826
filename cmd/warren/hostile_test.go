package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/scripted"
)

// The hostile-broker suite against the command: a broker that never
// begins the handshake, writes one byte at a time, never answers
// connection.close, or breaks the protocol right after open-ok. Each run
// ends within its bound, exits 1 and says in one line what went wrong
// (after doing its work, when only the close failed).
func TestCommandAgainstHostileBroker(t *testing.T) {
	t.Parallel()
	badFrameEnd := []byte{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 11, 0x00} // basic.qos-ok without its 0xCE
	cases := []struct {
		name  string
		opts  scripted.Options
		args  []string
		code  int
		want  string
		bound time.Duration
	}{
		{"never begins the handshake", scripted.Options{SilentHandshake: true},
			[]string{"declare", "queue", "q", "--connect-timeout", "1s"}, exitFailure,
			"no answer from the broker to the connection handshake within 1s", 5 * time.Second},
		{"writes one byte every 50ms", scripted.Options{Trickle: 50 * time.Millisecond},
			[]string{"declare", "queue", "q", "--connect-timeout", "1s"}, exitFailure,
			"no answer from the broker to the connection handshake within 1s", 5 * time.Second},
		{"never answers connection.close", scripted.Options{IgnoreClose: true},
			[]string{"declare", "queue", "q", "--rpc-timeout", "1s"}, exitFailure,
			"no answer from the broker to connection.close within 1s", 5 * time.Second},
		{"breaks the protocol after open-ok", scripted.Options{AfterOpen: badFrameEnd},
			[]string{"declare", "queue", "q", "--rpc-timeout", "2s"}, exitFailure,
			"501 FRAME_ERROR", 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := scriptedServer(t, tc.opts)
			start := time.Now()
			r := cliNoURL(t, "", append(tc.args, "--url", s.URL())...)
			elapsed := time.Since(start)
			require.Equal(t, tc.code, r.code, "stdout %q, stderr %q", r.stdout, r.stderr)
			require.Contains(t, oneLine(t, r.stderr), tc.want)
			require.Less(t, elapsed, tc.bound)
		})
	}
}

// With recovery on, a broker that breaks the protocol on every connection:
// the loss is noted, every recovery attempt fails the same way, and the
// request waiting for the recovery ends at --rpc-timeout saying why.
func TestCommandRecoveringFromProtocolErrors(t *testing.T) {
	t.Parallel()
	s := scriptedServer(t, scripted.Options{AfterOpen: []byte{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 11, 0x00}})
	start := time.Now()
	r := cliNoURL(t, "", "consume", "--queue", "q", "--recovery-timeout", "5s", "--rpc-timeout", "2s", "--url", s.URL())
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, exitFailure, r.code, "stderr %q", r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.Contains(t, lines[0], "warren consume: connection lost (amqp: connection closed by local: 501 FRAME_ERROR")
	require.Len(t, lines, 2, "%q", r.stderr)
	require.Contains(t, lines[1], "no answer from the broker to channel.open within 2s: the connection is recovering (")
	require.Contains(t, lines[1], "501 FRAME_ERROR", "the last attempt's error")
}

func TestConnectTimeoutMustBePositive(t *testing.T) {
	r := cliNoURL(t, "", "declare", "queue", "q", "--connect-timeout", "0s")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, oneLine(t, r.stderr), "--connect-timeout must be positive")
}
