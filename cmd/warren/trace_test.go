package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/scripted"
)

// traceLine is one --trace line: the subcommand, an optional role, the
// direction, the channel and the frame.
var traceLine = regexp.MustCompile(`^warren ([a-z]+): trace (?:\[([a-z0-9 ]+)\] )?(->|<-) ch (\d+) (\S+)`)

// traceFrames checks that every line of stderr but the last few (the
// error or note lines, which say so) is a trace line of sub, and returns
// "DIR METHOD" for each frame in order.
func traceFrames(t *testing.T, sub, stderr string) (frames []string, other []string) {
	t.Helper()
	require.True(t, strings.HasSuffix(stderr, "\n"), "stderr %q", stderr)
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			require.True(t, strings.HasPrefix(line, "warren "+sub+": "), "line %q", line)
			other = append(other, line)
			continue
		}
		require.Equal(t, sub, m[1], line)
		frames = append(frames, m[3]+" "+m[5])
	}
	return frames, other
}

// requireInOrder requires want to appear in got in that order (others may
// come between).
func requireInOrder(t *testing.T, got, want []string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	require.Equal(t, len(want), i, "want %q in order in %q", want, got)
}

func TestTraceDeclareAgainstBroker(t *testing.T) {
	q := uniqueName(t, "q")
	r := cli(t, "", "declare", "queue", q, "--trace")
	t.Cleanup(func() { cli(t, "", "delete", "queue", q) })
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, q+"\n", r.stdout) // stdout untouched
	got, other := traceFrames(t, "declare", r.stderr)
	require.Empty(t, other)
	requireInOrder(t, got, []string{
		"-> protocol-header",
		"<- connection.start", "-> connection.start-ok",
		"<- connection.tune", "-> connection.tune-ok",
		"-> connection.open", "<- connection.open-ok",
		"-> channel.open", "<- channel.open-ok",
		"-> queue.declare", "<- queue.declare-ok",
		"-> connection.close", "<- connection.close-ok",
	})
	require.Contains(t, r.stderr, "Response:<12 bytes redacted>")
	require.NotContains(t, r.stderr, "\x00guest")
	require.Regexp(t, `(?m)^warren declare: trace -> ch 1 queue.declare \{.*Queue:`+regexp.QuoteMeta(q)+` `, r.stderr)

	// A refused login with a password of our own: traced up to the
	// broker's close, the password nowhere, the error the last line.
	const secret = "Tr4ce-n0t-this"
	u := strings.Replace(testURL(t), "guest:guest@", "guest:"+secret+"@", 1)
	require.Contains(t, u, secret)
	r = cliNoURL(t, "", "declare", "queue", q, "--trace", "--url", u)
	require.Equal(t, exitFailure, r.code)
	require.NotContains(t, r.stderr, secret)
	got, other = traceFrames(t, "declare", r.stderr)
	requireInOrder(t, got, []string{"<- connection.start", "-> connection.start-ok", "<- connection.close"})
	require.Len(t, other, 1)
	require.Contains(t, other[0], "ACCESS_REFUSED")
	require.True(t, strings.HasSuffix(r.stderr, other[0]+"\n"), "the error comes last")
}

// Against a scripted server that accepts any credentials: a password of
// our own, with both mechanisms, never shows.
func TestTraceRedactsCredentials(t *testing.T) {
	t.Parallel()
	s := scriptedServer(t, scripted.Options{})
	const secret = "sw0rdfish-Trace"
	for _, mech := range []string{"", "?auth_mechanism=amqplain"} {
		u := "amqp://alice:" + secret + "@" + s.Addr() + "/" + mech
		r := cliNoURL(t, "", "declare", "queue", "traced", "--trace", "--url", u)
		require.Equal(t, 0, r.code, r.stderr)
		require.NotContains(t, r.stderr, secret, mech)
		got, other := traceFrames(t, "declare", r.stderr)
		require.Empty(t, other)
		requireInOrder(t, got, []string{"-> connection.start-ok", "-> connection.open", "-> channel.open", "-> queue.declare", "<- queue.declare-ok"})
		require.Contains(t, r.stderr, "bytes redacted>", mech)

		// publish and get trace too.
		r = cliNoURL(t, "", "publish", "--routing-key", "traced", "--confirm", "hello", "--trace", "--url", u)
		require.Equal(t, 0, r.code, r.stderr)
		require.NotContains(t, r.stderr, secret)
		got, _ = traceFrames(t, "publish", r.stderr)
		requireInOrder(t, got, []string{"-> confirm.select", "<- confirm.select-ok", "-> basic.publish", "<- basic.ack"})
	}
}

// Without --trace nothing is traced.
func TestNoTraceByDefault(t *testing.T) {
	t.Parallel()
	s := scriptedServer(t, scripted.Options{})
	r := cliNoURL(t, "", "declare", "queue", "quiet", "--url", s.URL())
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
}

func TestTraceEscapesControlCharacters(t *testing.T) {
	var b strings.Builder
	writeEscaped(&b, "reply\ntext\x00\tend é")
	require.Equal(t, `reply\ntext\x00\tend é`, b.String())
}
