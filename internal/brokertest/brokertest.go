// Package brokertest decides, for the test binaries that need a RabbitMQ,
// what happens when none is running: the tests that need it skip, after
// one line on stderr (visible without -v) saying how to start one, or,
// when WARREN_REQUIRE_BROKER=1 (.ci/run sets it), the test binary fails
// at once.
package brokertest

import (
	"fmt"
	"net"
	"os"
	"time"
)

// RequireEnv is the environment variable that makes a missing broker a
// failure.
const RequireEnv = "WARREN_REQUIRE_BROKER"

// Available reports whether something accepts TCP connections at addr
// within a second.
func Available(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Check runs in a TestMain: it reports whether the broker at addr is
// there. When it is not, it prints one line on stderr naming the package
// pkg and how to start RabbitMQ, and returns false so that the broker
// tests skip; under WARREN_REQUIRE_BROKER=1 it exits with status 1
// instead.
func Check(pkg, addr string) bool {
	if Available(addr) {
		return true
	}
	if os.Getenv(RequireEnv) == "1" {
		fmt.Fprintf(os.Stderr, "%s: no RabbitMQ at %s and %s=1: failing (start one: rabbitmq-server -detached && rabbitmqctl await_startup)\n",
			pkg, addr, RequireEnv)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "%s: no RabbitMQ at %s: skipping the tests that need it (start one: rabbitmq-server -detached && rabbitmqctl await_startup)\n",
		pkg, addr)
	return false
}
