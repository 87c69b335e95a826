//go:build cluster

package warren

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// The three-node cluster of scripts/cluster.sh: rabbit@localhost on 5672,
// rabbit2@localhost on 5673, rabbit3@localhost on 5674.
func clusterURI(port int) string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port) }

// TestClusterFailover runs the soak against a quorum queue whose leader is
// on rabbit3, with a producer and a consumer given all three addresses
// (rabbit3 first, so both connect to it), and stops rabbit3 in the middle
// of the run: both fail over to another node, the queue elects a new
// leader, and nothing confirmed is lost. It needs the cluster up
// (scripts/cluster.sh up); WARREN_CLUSTER_MESSAGES sets the run's length.
func TestClusterFailover(t *testing.T) {
	n := 20000
	if v := os.Getenv("WARREN_CLUSTER_MESSAGES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n/1000+150)*time.Second)
	defer cancel()
	node3, node2, node1 := clusterURI(5674), clusterURI(5673), clusterURI(5672)
	status, err := ctl("-n", "rabbit3@localhost", "cluster_status", "--formatter", "json")
	require.NoError(t, err, "the cluster is not up: run scripts/cluster.sh up")
	for _, node := range []string{"rabbit@localhost", "rabbit2@localhost", "rabbit3@localhost"} {
		require.Contains(t, status, node, "the cluster is not up: run scripts/cluster.sh up")
	}

	// Declared through rabbit3, the quorum queue's leader is there.
	qn := testQueueName(t)
	durableQueue(t, ctx, node3, qn, proto.Table{{Name: "x-queue-type", Value: proto.String("quorum")}})
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_, _ = ctl("-n", "rabbit3@localhost", "start_app")
		}
	})

	stamp := time.Now().UnixNano()
	s := &soak{
		uris: []string{node3, node2, node1}, queue: qn, messages: n, bodyBytes: 64,
		prodName: fmt.Sprintf("warren-cluster-producer-%d", stamp), consName: fmt.Sprintf("warren-cluster-consumer-%d", stamp),
		faults: []soakFault{{name: "stop rabbit3", do: func(*soak) error {
			_, err := ctl("-n", "rabbit3@localhost", "stop_app")
			return err
		}}},
	}
	res := s.run(t, ctx)
	t.Log(res)
	require.Equal(t, [2]string{redactURI(node3), redactURI(node3)}, res.startAddrs, "both connected to rabbit3 first")
	require.Equal(t, [2]string{redactURI(node2), redactURI(node2)}, res.endAddrs, "both failed over to the next address")
	require.Len(t, res.recoveries, 1, "the producer recovered once")
	require.Equal(t, 1, res.consRecoveries, "the consumer recovered once")

	_, err = ctl("-n", "rabbit3@localhost", "start_app")
	require.NoError(t, err)
	restarted = true
	_, err = ctl("-n", "rabbit3@localhost", "await_startup")
	require.NoError(t, err)
}

// redactURI is uri as Connection.Address reports it.
func redactURI(uri string) string {
	u, err := ParseURI(uri)
	if err != nil {
		return "unparsable " + uri
	}
	return u.Redacted()
}
