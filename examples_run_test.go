package warren_test

import (
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
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
	} {
		t.Run(ex.name, func(t *testing.T) {
			require.Equal(t, ex.want, captureStdout(t, ex.run))
		})
	}
}

// captureStdout runs fn with os.Stdout going to a pipe and returns what
// it wrote. (Not for parallel tests: os.Stdout is the process's.)
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stdout
	os.Stdout = w
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	defer func() { os.Stdout = saved }()
	fn()
	os.Stdout = saved
	require.NoError(t, w.Close())
	out := <-got
	require.NoError(t, r.Close())
	return out
}
