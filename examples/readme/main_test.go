package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/warren-amqp/warren/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.SkipWithoutBroker("examples/readme", "127.0.0.1:5672", "^TestBroker")
	goleak.VerifyTestMain(m)
}

// The README shows this program exactly: the code block after "## Using
// the client" is main.go, byte for byte, so that the two cannot drift.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(readme)
	i := strings.Index(s, "## Using the client")
	require.GreaterOrEqual(t, i, 0)
	start := strings.Index(s[i:], "```go\n") + i + len("```go\n")
	end := strings.Index(s[start:], "```\n") + start
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	require.Equal(t, string(src), s[start:end], "README's block and examples/readme/main.go differ")
}

// And the program runs as written against the local broker.
func TestBrokerREADMEProgram(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var runErr error
	out, err := testenv.CaptureStdout(func() { runErr = run(ctx, "amqp://guest:guest@127.0.0.1:5672/") })
	require.NoError(t, err)
	require.NoError(t, runErr)
	require.Equal(t, "hello\nworld\n", out)
}
