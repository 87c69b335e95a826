package statemachine_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
)

// TestMain skips the test that runs the example against RabbitMQ when
// none is running, after saying so in one line.
func TestMain(m *testing.M) {
	testenv.SkipWithoutBroker("proto/statemachine", brokerAddr(), "^TestBrokerExampleEventLoop$")
	os.Exit(m.Run())
}

// TestBrokerExampleEventLoop runs Example_eventLoop against RabbitMQ and
// checks what it prints (the example carries no Output comment, so that
// go test without a broker compiles it without running it).
func TestBrokerExampleEventLoop(t *testing.T) {
	got, err := testenv.CaptureStdout(Example_eventLoop)
	require.NoError(t, err)
	require.Equal(t, "channel open\nqueue declared\npublish 1 (hello) acked: true\n"+
		"got \"hello, sans-IO\" (text/plain)\nqueue deleted\nclosed, error: <nil>\n", got)
}
