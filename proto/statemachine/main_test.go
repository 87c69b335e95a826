package statemachine_test

import (
	"flag"
	"os"
	"testing"

	"github.com/warren-amqp/warren/internal/brokertest"
)

// TestMain skips the example that talks to RabbitMQ when none is running,
// after saying so in one line.
func TestMain(m *testing.M) {
	if !brokertest.Check("proto/statemachine", brokerAddr()) {
		flag.Parse()
		skip := "^Example_eventLoop$"
		if s := flag.Lookup("test.skip").Value.String(); s != "" {
			skip += "|" + s
		}
		_ = flag.Set("test.skip", skip)
	}
	os.Exit(m.Run())
}
