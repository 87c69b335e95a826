package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/publisher-confirms") }

// report matches a strategy's report line.
var report = regexp.MustCompile(`(?m)^Published (\d+) messages (individually|in batches|asynchronously) in \d+ ms: (\d+) acked, (\d+) nacked\n  the queue held (\d+) messages$`)

// reports returns, per strategy, "published/acked/nacked/held".
func reports(out string) map[string]string {
	got := map[string]string{}
	for _, m := range report.FindAllStringSubmatch(out, -1) {
		got[m[2]] = strings.Join([]string{m[1], m[3], m[4], m[5]}, "/")
	}
	return got
}

// Every strategy gets every message confirmed, and the queue holds them
// all; a batch size that does not divide the count leaves a last, shorter
// batch.
func TestBrokerAllStrategies(t *testing.T) {
	q := extest.Name(t, "confirms")
	extest.DeleteQueues(t, q)
	out, err := extest.Run(run, "--url", extest.URL(), "--queue", q, "--count", "1234", "--batch-size", "100")
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"individually":   "1234/1234/0/1234",
		"in batches":     "1234/1234/0/1234",
		"asynchronously": "1234/1234/0/1234",
	}, reports(out), out)
	require.Equal(t, 6, strings.Count(out, "\n"), out)
}

// With the server-named queue of the default, each strategy alone.
func TestBrokerEachStrategy(t *testing.T) {
	for _, s := range []string{"individual", "batch", "async"} {
		t.Run(s, func(t *testing.T) {
			out, err := extest.Run(run, "--url", extest.URL(), "--strategy", s, "--count", "300", "--batch-size", "7")
			require.NoError(t, err)
			got := reports(out)
			require.Len(t, got, 1, out)
			for _, v := range got {
				require.Equal(t, "300/300/0/300", v)
			}
		})
	}
}

// A queue limited to 50 messages that rejects what does not fit makes the
// broker nack the other 70: every strategy counts them (the asynchronous
// one names each), and the program fails.
func TestBrokerNacksCounted(t *testing.T) {
	for _, s := range []string{"individual", "batch", "async"} {
		t.Run(s, func(t *testing.T) {
			q := extest.Name(t, "confirms")
			extest.DeleteQueues(t, q)
			out, err := extest.Run(run, "--url", extest.URL(), "--queue", q, "--strategy", s,
				"--count", "120", "--batch-size", "50", "--max-length", "50")
			require.ErrorContains(t, err, "the broker nacked 70 messages")
			got := reports(out)
			require.Len(t, got, 1, out)
			for _, v := range got {
				require.Equal(t, "120/50/70/50", v)
			}
			if s == "async" {
				require.Equal(t, 70, strings.Count(out, " was nacked\n"))
				require.Contains(t, out, fmt.Sprintf("message %q (sequence number %d) was nacked", "50", 51))
			}
		})
	}
}

// The bookkeeping of the asynchronous strategy: single and multiple
// notices, out of order, and notices for what is already settled.
func TestOutstanding(t *testing.T) {
	var out strings.Builder
	o := outstanding{bodies: map[uint64][]byte{}, stdout: &out}
	for seq := uint64(11); seq <= 20; seq++ {
		o.add(seq, []byte(fmt.Sprint(seq)))
	}
	o.settle(warren.ConfirmNotice{DeliveryTag: 13, Ack: true})
	require.Equal(t, uint64(11), o.low)
	o.settle(warren.ConfirmNotice{DeliveryTag: 12, Multiple: true, Ack: true})
	require.Equal(t, uint64(14), o.low)
	o.settle(warren.ConfirmNotice{DeliveryTag: 15, Ack: false})
	o.settle(warren.ConfirmNotice{DeliveryTag: 18, Multiple: true, Ack: true})
	require.Equal(t, uint64(19), o.low)
	o.settle(warren.ConfirmNotice{DeliveryTag: 18, Multiple: true, Ack: true}) // nothing left up to 18
	o.settle(warren.ConfirmNotice{DeliveryTag: 20, Multiple: true, Ack: false})
	require.Empty(t, o.bodies)
	require.Equal(t, uint64(21), o.low)
	require.Equal(t, tally{acked: 7, nacked: 3}, o.tally)
	require.Equal(t, "  message \"15\" (sequence number 15) was nacked\n"+
		"  message \"19\" (sequence number 19) was nacked\n"+
		"  message \"20\" (sequence number 20) was nacked\n", out.String())
}

func TestBadFlags(t *testing.T) {
	_, err := extest.Run(run, "--strategy", "hope")
	require.ErrorContains(t, err, "--strategy must be")
	_, err = extest.Run(run, "--count", "0")
	require.ErrorContains(t, err, "--count")
}
