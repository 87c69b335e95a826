//go:build brokerglobal

package warren

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSoakRecovery publishes confirmed persistent messages to a durable
// queue and consumes them with manual acks while the connections are
// killed and the broker restarted: nothing confirmed is lost, and every
// duplicate is explained. CI runs a short version (20,000 messages, two
// kills, one restart); WARREN_SOAK_MESSAGES=1000000 runs the full one
// (five kills and a restart), and WARREN_SOAK_REPORT names a file to
// append the result to.
func TestSoakRecovery(t *testing.T) {
	n, kills := 20000, 2
	if v := os.Getenv("WARREN_SOAK_MESSAGES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
		kills = 5
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n/1000+120)*time.Second)
	defer cancel()
	qn := testQueueName(t)
	durableQueue(t, ctx, brokerURL(), qn, nil)

	var faults []soakFault
	for i := range kills {
		faults = append(faults, soakFault{name: "kill", do: killConnections})
		if i == kills/2-1 || kills == 1 {
			faults = append(faults, soakFault{name: "restart", do: restartBroker})
		}
	}
	stamp := time.Now().UnixNano()
	s := &soak{
		uris: []string{brokerURL()}, queue: qn, messages: n, faults: faults, bodyBytes: 64,
		prodName: fmt.Sprintf("warren-soak-producer-%d", stamp), consName: fmt.Sprintf("warren-soak-consumer-%d", stamp),
	}
	res := s.run(t, ctx)
	t.Log(res)
	require.Len(t, res.recoveries, kills+1, "the producer recovered from every fault")
	if path := os.Getenv("WARREN_SOAK_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		_, err = fmt.Fprintf(f, "%s soak: %s\n", time.Now().UTC().Format(time.DateTime), res)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
}
