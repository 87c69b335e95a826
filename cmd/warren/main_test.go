package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/internal/testenv"
)

// brokerMissing is set by TestMain when no RabbitMQ is running: the
// tests that need one (those that call testURL) skip.
var brokerMissing bool

func TestMain(m *testing.M) {
	brokerMissing = !testenv.Check("cmd/warren", brokerAddr())
	goleak.VerifyTestMain(m)
}

// brokerURL is the broker the tests use: $AMQP_URL or the local RabbitMQ.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// brokerAddr is brokerURL's host:port.
func brokerAddr() string {
	u, err := warren.ParseURI(brokerURL())
	if err != nil {
		return "127.0.0.1:5672"
	}
	return u.Addr()
}

// testURL is brokerURL for a test that needs the broker: it skips when
// there is none.
func testURL(t *testing.T) string {
	t.Helper()
	if brokerMissing {
		t.Skip("no RabbitMQ: see the line printed before the tests")
	}
	return brokerURL()
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs warren in-process with the test broker's --url appended
// (flags may follow positional arguments).
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return cliNoURL(t, stdin, append(args, "--url", testURL(t))...)
}

func cliNoURL(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// ok requires exit code 0 and an empty stderr.
func (r result) ok(t *testing.T) result {
	t.Helper()
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	return r
}

// oneLine requires stderr to be exactly one line, without a stack trace.
func oneLine(t *testing.T, stderr string) string {
	t.Helper()
	require.True(t, strings.HasSuffix(stderr, "\n"), "stderr %q", stderr)
	line := strings.TrimSuffix(stderr, "\n")
	require.NotContains(t, line, "\n")
	require.NotContains(t, line, "goroutine")
	require.NotContains(t, line, "panic")
	require.True(t, strings.HasPrefix(line, "warren"), "stderr %q", stderr)
	return line
}

func uniqueName(t *testing.T, kind string) string {
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("warren.cli.%s.%s.%d", name, kind, time.Now().UnixNano())
}

func declareQueue(t *testing.T) string {
	t.Helper()
	q := uniqueName(t, "q")
	r := cli(t, "", "declare", "queue", q).ok(t)
	require.Equal(t, q+"\n", r.stdout)
	t.Cleanup(func() { cli(t, "", "delete", "queue", q) })
	return q
}

func TestHelpOnEverySubcommand(t *testing.T) {
	for _, c := range commands {
		r := cliNoURL(t, "", c.name, "--help")
		require.Equal(t, 0, r.code, c.name)
		require.Contains(t, r.stdout, "Usage: warren "+c.name, c.name)
		require.Contains(t, r.stdout, "--url", c.name)
		require.Empty(t, r.stderr, c.name)
		r = cliNoURL(t, "", "help", c.name)
		require.Equal(t, 0, r.code, c.name)
		require.Contains(t, r.stdout, "Usage: warren "+c.name, c.name)
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := cliNoURL(t, "", args...)
		require.Equal(t, 0, r.code)
		require.Contains(t, r.stdout, "Subcommands:")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"publish", "--no-such-flag"},
		{"publish", "a", "b"},
		{"publish", "--property", "colour=blue", "x"},
		{"publish", "--headers-json", "{not json", "x"},
		{"consume"},
		{"get", "--queue", "q", "extra"},
		{"declare"},
		{"declare", "table", "x"},
		{"declare", "queue", "q", "--type", "fanout"},
		{"bind", "--exchange", "x"},
		{"bind", "--queue", "q", "--destination-exchange", "d", "--exchange", "x"},
		{"delete", "queue"},
		{"purge"},
		{"perf", "--size", "10"},
		{"perf", "--duration", "1s", "--count", "10"},
		{"get", "--queue", "q", "--url", "http://example.com/"},
	} {
		r := cliNoURL(t, "", args...)
		require.Equal(t, exitUsage, r.code, "%q: %s", args, r.stderr)
		oneLine(t, r.stderr)
		require.Empty(t, r.stdout, "%q", args)
	}
}

func TestFlagsInterleaveWithPositionals(t *testing.T) {
	e := &env{ctx: context.Background(), name: "test", stdout: io.Discard}
	f := newFlags(e, "test", "")
	durable := f.Bool("durable", false, "")
	kind := f.String("type", "", "")
	pos, err := f.parse([]string{"exchange", "--durable", "name", "--type", "fanout", "--", "--literal"})
	require.NoError(t, err)
	require.Equal(t, []string{"exchange", "name", "--literal"}, pos)
	require.True(t, *durable)
	require.Equal(t, "fanout", *kind)

	pos, err = f.parse([]string{"queue", ""})
	require.NoError(t, err)
	require.Equal(t, []string{"queue", ""}, pos)
}

func TestPublishGetRoundTripsPropertiesAndHeaders(t *testing.T) {
	q := declareQueue(t)
	headers := `{"count":42,"ratio":2.5,"big":9007199254740993,"tags":["a",1,true,null],` +
		`"nested":{"k":"v","deeper":{"x":false}},"typed":{"type":"F","value":{"type":"kept"}},` +
		`"when":{"type":"T","value":"2024-05-06T07:08:09Z"},"price":{"type":"D","scale":2,"value":314},` +
		`"raw":{"type":"x","base64":"AAEC/w=="},"small":{"type":"b","value":-5},"u8":{"type":"B","value":255},` +
		`"i16":{"type":"s","value":-300},"u16":{"type":"u","value":65535},"i32":{"type":"I","value":-7},` +
		`"u32":{"type":"i","value":4294967295},"L":{"type":"L","value":"-3"},"f32":{"type":"f","value":0.1},` +
		`"latin1":{"type":"S","base64":"/w=="},"nothing":null}`
	cli(t, "", "publish", "--routing-key", q,
		"--property", "content-type=application/json",
		"--property", "content-encoding=identity",
		"--property", "delivery-mode=persistent",
		"--property", "priority=0",
		"--property", "correlation-id=corr-1",
		"--property", "reply-to=replies",
		"--property", "expiration=60000",
		"--property", "message-id=m-1",
		"--property", "timestamp=1714979289",
		"--property", "type=order.created",
		"--property", "user-id=guest",
		"--property", "app-id=warren-test",
		"--property", "cluster-id=c1",
		"--headers-json", headers,
		"--header", "from=cli",
		"--header", "count=replaced",
		`{"hello":"world"}`).ok(t)

	r := cli(t, "", "get", "--queue", q, "--json").ok(t)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
	require.Equal(t, "", got["exchange"])
	require.Equal(t, q, got["routing_key"])
	require.Equal(t, false, got["redelivered"])
	require.Equal(t, float64(0), got["message_count"])
	require.Equal(t, `{"hello":"world"}`, got["body"])
	require.Equal(t, map[string]any{
		"content_type": "application/json", "content_encoding": "identity", "delivery_mode": float64(2),
		"priority": float64(0), "correlation_id": "corr-1", "reply_to": "replies", "expiration": "60000",
		"message_id": "m-1", "timestamp": "2024-05-06T07:08:09Z", "type": "order.created",
		"user_id": "guest", "app_id": "warren-test", "cluster_id": "c1",
	}, got["properties"])

	// The headers, exactly and in order.
	start := strings.Index(r.stdout, `"headers":`) + len(`"headers":`)
	end := strings.Index(r.stdout, `,"body":`)
	require.Equal(t, `{"count":"replaced","ratio":{"type":"d","value":2.5},"big":{"type":"l","value":"9007199254740993"},`+
		`"tags":["a",{"type":"l","value":"1"},true,null],"nested":{"k":"v","deeper":{"x":false}},`+
		`"typed":{"type":"F","value":{"type":"kept"}},"when":{"type":"T","value":"2024-05-06T07:08:09Z"},`+
		`"price":{"type":"D","scale":2,"value":314},"raw":{"type":"x","base64":"AAEC/w=="},"small":{"type":"b","value":-5},`+
		`"u8":{"type":"B","value":255},"i16":{"type":"s","value":-300},"u16":{"type":"u","value":65535},"i32":{"type":"I","value":-7},`+
		`"u32":{"type":"i","value":4294967295},"L":{"type":"L","value":"-3"},"f32":{"type":"f","value":0.1},`+
		`"latin1":{"type":"S","base64":"/w=="},"nothing":null,"from":"cli"}`, r.stdout[start:end])

	// Acknowledged: the queue is empty now.
	r = cli(t, "", "get", "--queue", q)
	require.Equal(t, exitEmpty, r.code)
	require.Equal(t, "warren get: queue "+q+" is empty", oneLine(t, r.stderr))
}

func TestConsumeCountJSONAndPurge(t *testing.T) {
	q := declareQueue(t)
	cli(t, "one\ntwo\r\nthree\n\nfive", "publish", "--lines", "--routing-key", q, "--confirm").ok(t)
	cli(t, "binary \x00\xff body", "publish", "--routing-key", q).ok(t)

	r := cli(t, "", "consume", "--queue", q, "--count", "2", "--json", "--timeout", "5s").ok(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 2)
	for i, want := range []string{"one", "two"} {
		var m struct {
			RoutingKey  string         `json:"routing_key"`
			Redelivered bool           `json:"redelivered"`
			DeliveryTag uint64         `json:"delivery_tag"`
			Properties  map[string]any `json:"properties"`
			Body        string         `json:"body"`
		}
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &m))
		require.Equal(t, want, m.Body)
		require.Equal(t, q, m.RoutingKey)
		require.False(t, m.Redelivered)
		require.Equal(t, uint64(i+1), m.DeliveryTag)
		require.Empty(t, m.Properties)
		require.NotContains(t, lines[i], `"headers"`)
	}

	// --count 2 with the default prefetch of 100 took exactly two: the
	// next message is "three", not redelivered.
	r = cli(t, "", "get", "--queue", q, "--json").ok(t)
	require.Contains(t, r.stdout, `"redelivered":false`)
	require.Contains(t, r.stdout, `"body":"three"`)
	require.Contains(t, r.stdout, `"message_count":3`)

	// Text output; then the binary body, quoted; then the idle timeout.
	r = cli(t, "", "consume", "--queue", q, "--timeout", "500ms").ok(t)
	require.Equal(t, q+"\t\n"+q+"\tfive\n"+q+"\t"+`"binary \x00\xff body"`+"\n", r.stdout)

	cli(t, "x", "publish", "--routing-key", q, "--count", "3").ok(t)
	r = cli(t, "", "get", "--queue", q, "--json", "--no-ack").ok(t)
	require.Contains(t, r.stdout, `"body":"x"`)
	r = cli(t, "", "purge", "--queue", q).ok(t)
	require.Equal(t, "2\n", r.stdout)

	cli(t, "\xff\xfe", "publish", "--routing-key", q).ok(t)
	r = cli(t, "", "get", "--queue", q, "--json").ok(t)
	require.Contains(t, r.stdout, `"body_base64":"//4="`)
	require.NotContains(t, r.stdout, `"body":`)
}

func TestConsumeOnMissingQueueFails(t *testing.T) {
	r := cli(t, "", "consume", "--queue", uniqueName(t, "missing"), "--timeout", "1s")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, oneLine(t, r.stderr), "404 NOT_FOUND")
}

func TestBindUnbindExchangeToExchange(t *testing.T) {
	src, dst := uniqueName(t, "src"), uniqueName(t, "dst")
	q := declareQueue(t)
	r := cli(t, "", "declare", "exchange", src, "--type", "topic").ok(t)
	require.Equal(t, src+"\n", r.stdout)
	t.Cleanup(func() { cli(t, "", "delete", "exchange", src) })
	cli(t, "", "declare", "--type", "fanout", "exchange", dst, "--auto-delete").ok(t)
	t.Cleanup(func() { cli(t, "", "delete", "exchange", dst) })

	r = cli(t, "", "bind", "--destination-exchange", dst, "--exchange", src, "--routing-key", "order.*").ok(t)
	require.Contains(t, r.stdout, "bound exchange")
	cli(t, "", "bind", "--queue", q, "--exchange", dst).ok(t)

	cli(t, "", "publish", "--exchange", src, "--routing-key", "order.created", "--mandatory", "via e2e").ok(t)
	r = cli(t, "", "get", "--queue", q).ok(t)
	require.Equal(t, "order.created\tvia e2e\n", r.stdout)

	r = cli(t, "", "unbind", "--destination-exchange", dst, "--exchange", src, "--routing-key", "order.*").ok(t)
	require.Contains(t, r.stdout, "unbound exchange")
	r = cli(t, "", "publish", "--exchange", src, "--routing-key", "order.created", "--mandatory", "lost")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, oneLine(t, r.stderr), "returned")

	cli(t, "", "unbind", "--queue", q, "--exchange", dst).ok(t)
	r = cli(t, "", "delete", "exchange", src).ok(t)
	require.Equal(t, fmt.Sprintf("deleted exchange %q\n", src), r.stdout)
	r = cli(t, "", "delete", "queue", q).ok(t)
	require.Equal(t, fmt.Sprintf("deleted queue %q (0 message(s))\n", q), r.stdout)
}

func TestDeclareServerNamedQueueAndArgs(t *testing.T) {
	r := cli(t, "", "declare", "queue", "", "--arg", "x-max-length=10", "--arg", "x-expires=60000",
		"--args-json", `{"x-overflow":"reject-publish"}`).ok(t)
	name := strings.TrimSpace(r.stdout)
	require.True(t, strings.HasPrefix(name, "amq.gen-"), name)
	t.Cleanup(func() { cli(t, "", "delete", "queue", name) })
	r = cli(t, "", "declare", "queue", name, "--passive").ok(t)
	require.Equal(t, name+"\n", r.stdout)

	// x-overflow=reject-publish with x-max-length=10: the 11th is nacked.
	r = cli(t, "m", "publish", "--routing-key", name, "--count", "11", "--confirm")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, oneLine(t, r.stderr), "1 of 11 message(s) nacked")

	// Redeclaring with other arguments is a 406 on one line.
	q := declareQueue(t)
	r = cli(t, "", "declare", "queue", q, "--arg", "x-max-length=5")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, oneLine(t, r.stderr), "406 PRECONDITION_FAILED")
}

func TestPublishMandatoryUnroutable(t *testing.T) {
	key := uniqueName(t, "nobody")
	r := cli(t, "", "publish", "--routing-key", key, "--mandatory", "hello")
	require.Equal(t, exitFailure, r.code)
	line := oneLine(t, r.stderr)
	require.Contains(t, line, "1 of 1 message(s) returned by the broker (312 NO_ROUTE")
	require.Contains(t, line, strconv.Quote(key))
	require.Empty(t, r.stdout)
}

func TestPublishConfirmHundred(t *testing.T) {
	q := declareQueue(t)
	r := cli(t, "", "publish", "--routing-key", q, "--confirm", "--count", "100", "msg").ok(t)
	require.Contains(t, r.stdout, "published 100 message(s)")
	require.Contains(t, r.stdout, "100 confirmed")
	r = cli(t, "", "purge", "--queue", q).ok(t)
	require.Equal(t, "100\n", r.stdout)
}

func TestWrongPasswordIsOneRedactedLine(t *testing.T) {
	const secret = "n0t-the-Passw0rd"
	u := strings.Replace(testURL(t), "guest:guest@", "guest:"+secret+"@", 1)
	require.Contains(t, u, secret)
	r := cliNoURL(t, "", "get", "--queue", "q", "--url", u)
	require.Equal(t, exitFailure, r.code)
	line := oneLine(t, r.stderr)
	require.NotContains(t, line, secret)
	require.Contains(t, line, "ACCESS_REFUSED")
	require.Contains(t, line, "xxxxx")

	// Also from $AMQP_URL, and when the URI itself is malformed.
	t.Setenv("AMQP_URL", u)
	r = cliNoURL(t, "", "purge", "--queue", "q")
	require.Equal(t, exitFailure, r.code)
	require.NotContains(t, oneLine(t, r.stderr), secret)
	r = cliNoURL(t, "", "purge", "--queue", "q", "--url", "amqp://guest:"+secret+"@host:notaport/")
	require.Equal(t, exitUsage, r.code)
	require.NotContains(t, oneLine(t, r.stderr), secret)
}

func TestPerfJSONAndSVG(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "perf.svg")
	r := cli(t, "", "perf", "--duration", "3s", "--json", "--svg", svg, "--producers", "2", "--consumers", "2")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	var sum perfSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	require.True(t, sum.OK)
	require.Positive(t, sum.Sent)
	require.Equal(t, sum.Sent, sum.Confirmed)
	require.Equal(t, sum.Confirmed, sum.Consumed)
	require.Equal(t, sum.Confirmed, sum.Expected)
	require.Zero(t, sum.Missing)
	require.Zero(t, sum.Duplicates)
	require.Empty(t, sum.Errors)
	require.GreaterOrEqual(t, len(sum.Series), 3)
	require.Positive(t, sum.Latency.P99)
	require.Contains(t, r.stderr, "time 1.0s, sent ")
	require.Contains(t, r.stderr, "check      OK")

	f, err := os.Open(svg)
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	var root xml.StartElement
	for {
		tok, err := dec.Token()
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok {
			root = se
			break
		}
	}
	require.Equal(t, "svg", root.Name.Local)
	require.Equal(t, "http://www.w3.org/2000/svg", root.Name.Space)
	polylines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	require.Equal(t, 5, polylines) // sent, confirmed, received, p50, p99

	// The temporary queue is gone.
	r = cli(t, "", "declare", "queue", sum.Queue, "--passive")
	require.Equal(t, exitFailure, r.code)
}

func TestPerfCountWithoutConfirms(t *testing.T) {
	r := cli(t, "", "perf", "--count", "2000", "--confirm=false", "--size", "100", "--json")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	var sum perfSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum), r.stdout)
	require.True(t, sum.OK)
	require.Equal(t, uint64(2000), sum.Sent)
	require.Equal(t, uint64(2000), sum.Expected)
	require.Equal(t, uint64(2000), sum.Consumed)
	require.Zero(t, sum.Confirmed)
}

// TestBinary builds the real binary and checks exit codes and that errors
// are one line on stderr, never a stack trace.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "warren")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	exe := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, o.String(), e.String()
	}
	code, stdout, stderr := exe("publish", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "Usage: warren publish")
	require.Empty(t, stderr)

	code, _, stderr = exe("get", "--queue", uniqueName(t, "missing"), "--url", testURL(t))
	require.Equal(t, exitFailure, code)
	require.Contains(t, oneLine(t, stderr), "404 NOT_FOUND")

	code, _, stderr = exe("get", "--url", strings.Replace(testURL(t), "guest:guest@", "guest:s3cr3t-pw@", 1), "--queue", "q")
	require.Equal(t, exitFailure, code)
	require.NotContains(t, oneLine(t, stderr), "s3cr3t-pw")

	code, _, stderr = exe("get", "--url", "amqp://guest:guest@127.0.0.1:1/", "--queue", "q")
	require.Equal(t, exitFailure, code)
	require.Contains(t, oneLine(t, stderr), "connection refused")

	code, _, stderr = exe("publish", "--bogus")
	require.Equal(t, exitUsage, code)
	oneLine(t, stderr)
}

// Ctrl-C (the context ending) stops perf early; the check still runs.
func TestPerfInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"perf", "--duration", "60s", "--json", "--rate", "2000", "--url", testURL(t)}, strings.NewReader(""), &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var sum perfSummary
	require.NoError(t, json.Unmarshal(out.Bytes(), &sum))
	require.True(t, sum.Interrupted)
	require.True(t, sum.OK)
	require.Less(t, sum.DurationSeconds, 5.0)
	require.Equal(t, sum.Confirmed, sum.Consumed)
	require.Contains(t, errOut.String(), "interrupted")
}

// Ctrl-C stops consume with exit code 0 after the messages it printed.
func TestConsumeInterrupted(t *testing.T) {
	q := declareQueue(t)
	cli(t, "", "publish", "--routing-key", q, "--count", "3", "m").ok(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"consume", "--queue", q, "--url", testURL(t)}, strings.NewReader(""), &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Equal(t, strings.Repeat(q+"\tm\n", 3), out.String())
	r := cli(t, "", "purge", "--queue", q).ok(t)
	require.Equal(t, "0\n", r.stdout)
}

// A publish the broker refuses with a channel error fails, with or without
// confirms, although the library reopens the channel behind the scenes.
func TestPublishToMissingExchangeFails(t *testing.T) {
	x := uniqueName(t, "nox")
	for _, tc := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"body"}},
		{"", []string{"body", "--confirm"}},
		{"", []string{"body", "--count", "500"}},
		{strings.Repeat("line\n", 2000), []string{"--lines"}},
	} {
		r := cli(t, tc.stdin, append([]string{"publish", "--exchange", x}, tc.args...)...)
		require.Equal(t, exitFailure, r.code, "%q", tc.args)
		require.Contains(t, oneLine(t, r.stderr), "404 NOT_FOUND", "%q", tc.args)
	}
}
