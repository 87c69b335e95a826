package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/examples/internal/extest"
)

func TestMain(m *testing.M) { extest.Main(m, "examples/rpc") }

func TestFib(t *testing.T) {
	for n, want := range []int{0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55} {
		require.Equal(t, want, fib(n))
	}
	require.Equal(t, 832040, fib(30))
}

// The client's requests are answered, in turn, through direct reply-to; a
// request the server refuses is reported as the server's error.
func TestBrokerCallServer(t *testing.T) {
	q := extest.Name(t, "rpc_queue")
	extest.DeleteQueues(t, q)
	url := extest.URL()

	srv := extest.Start(t, run, "--url", url, "--role", "server", "--queue", q, "--count", "4")
	srv.WaitFor(t, "Awaiting RPC requests", 1, 10*time.Second)

	out, err := extest.Run(run, "--url", url, "--role", "client", "--queue", q, "--timeout", "20s", "30", "10", "1")
	require.NoError(t, err)
	require.Equal(t, " [x] Requesting fib(30)\n [.] Got 832040\n"+
		" [x] Requesting fib(10)\n [.] Got 55\n"+
		" [x] Requesting fib(1)\n [.] Got 1\n", out)

	out, err = extest.Run(run, "--url", url, "--role", "client", "--queue", q, "--timeout", "20s", "41")
	require.ErrorContains(t, err, "fib(41): the server says: n must be a whole number from 0 to 40")
	require.Equal(t, " [x] Requesting fib(41)\n", out)

	require.NoError(t, srv.Wait(20*time.Second)) // --count 4: served four
	require.Equal(t, " [x] Awaiting RPC requests\n [.] fib(30)\n [.] fib(10)\n [.] fib(1)\n [!] bad request \"41\"\n", srv.Out.String())
	require.Equal(t, 0, extest.Queue(t, q).Messages)
}

// Two servers share the requests; every answer reaches its own client.
func TestBrokerTwoServersTwoClients(t *testing.T) {
	q := extest.Name(t, "rpc_queue")
	extest.DeleteQueues(t, q)
	url := extest.URL()

	s1 := extest.Start(t, run, "--url", url, "--role", "server", "--queue", q)
	s2 := extest.Start(t, run, "--url", url, "--role", "server", "--queue", q)
	s1.WaitFor(t, "Awaiting RPC requests", 1, 10*time.Second)
	s2.WaitFor(t, "Awaiting RPC requests", 1, 10*time.Second)

	c1 := extest.Start(t, run, "--url", url, "--role", "client", "--queue", q, "--timeout", "20s", "20", "21", "22", "23")
	c2 := extest.Start(t, run, "--url", url, "--role", "client", "--queue", q, "--timeout", "20s", "5", "6", "7", "8")
	require.NoError(t, c1.Wait(30*time.Second))
	require.NoError(t, c2.Wait(30*time.Second))
	require.Equal(t, " [x] Requesting fib(20)\n [.] Got 6765\n [x] Requesting fib(21)\n [.] Got 10946\n"+
		" [x] Requesting fib(22)\n [.] Got 17711\n [x] Requesting fib(23)\n [.] Got 28657\n", c1.Out.String())
	require.Equal(t, " [x] Requesting fib(5)\n [.] Got 5\n [x] Requesting fib(6)\n [.] Got 8\n"+
		" [x] Requesting fib(7)\n [.] Got 13\n [x] Requesting fib(8)\n [.] Got 21\n", c2.Out.String())
	require.NoError(t, s1.Stop())
	require.NoError(t, s2.Stop())
	require.Equal(t, 8, strings.Count(s1.Out.String(), " [.] fib(")+strings.Count(s2.Out.String(), " [.] fib("))
}

// Without a server's queue the request comes back at once.
func TestBrokerNoServer(t *testing.T) {
	q := extest.Name(t, "rpc_queue")
	start := time.Now()
	_, err := extest.Run(run, "--url", extest.URL(), "--role", "client", "--queue", q, "--timeout", "20s", "3")
	require.ErrorContains(t, err, "no server")
	require.ErrorContains(t, err, "312 NO_ROUTE")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestClientNeedsNumbers(t *testing.T) {
	_, err := extest.Run(run, "--role", "client", "three")
	require.ErrorContains(t, err, `not a number: "three"`)
}
