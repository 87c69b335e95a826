package warren_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
)

// TestBrokerExamples runs the examples that talk to RabbitMQ and checks
// what they print. The examples carry no Output comment, so that go test
// compiles them everywhere but runs them only here, where a missing
// broker makes the test skip (see TestMain) instead of failing.
func TestBrokerExamples(t *testing.T) {
	for _, ex := range []struct {
		name string
		run  func()
		want string
	}{
		{"ExampleDial", ExampleDial, "alive: true\nalive after close: false\n"},
		{"ExampleChannel_QueueDeclare", ExampleChannel_QueueDeclare, "server-named queue: true\n"},
		{"ExampleChannel_PublishWithConfirm", ExampleChannel_PublishWithConfirm, "acked: true\n"},
		{"ExampleChannel_Consume", ExampleChannel_Consume, "job 1\njob 2\njob 3\n"},
		{"ExampleChannel_NotifyReturn", ExampleChannel_NotifyReturn, "312 NO_ROUTE lost?\nhandle says returned: true\n"},
		{"Example_stream", Example_stream, "offset 1: paid\noffset 2: shipped\n"},
		{"ExampleConsumer_Messages", ExampleConsumer_Messages, "resize\nupload\nnotify\nconsumer ended cleanly: true\n"},
		{"ExampleRPCClient", ExampleRPCClient, "hello, world\nreturned: true true\n"},
		{"ExampleChannelError", ExampleChannelError, "not found: true\ncode: 404 recoverable: false\nnext call: <nil>\n"},
		{"ExampleConnectionError", ExampleConnectionError, "code: 403 by: peer\naccess refused: true recoverable: false\n"},
		{"ExampleConfirmation_Wait", ExampleConfirmation_Wait, "not sent: true\n"},
	} {
		t.Run(ex.name, func(t *testing.T) {
			got, err := testenv.CaptureStdout(ex.run)
			require.NoError(t, err)
			require.Equal(t, ex.want, got)
		})
	}
}
