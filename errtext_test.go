package warren

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Error texts say each thing once, with one "amqp: " prefix: no
// "tcp: dial ADDR: dial tcp ADDR", no "403 ACCESS_REFUSED: ACCESS_REFUSED -".
func TestBrokerErrorTextsSayEachThingOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := dead.Addr().String()
	require.NoError(t, dead.Close())

	_, refused := Dial(ctx, "amqp://guest:guest@"+addr+"/")
	_, login := DialWith(ctx, brokerURLWith(t, "guest:not-the-password", "/", ""), DialOptions{})
	c := dialURL(t, brokerURL(), Config{})
	ch := newChannel(t, ctx, c)
	_, missing := ch.QueueDeclare(ctx, testQueueName(t), QueueOptions{Passive: true})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{refused, "amqp: connecting to amqp://guest:xxxxx@" + addr + "/: dial tcp " + addr + ": connect: connection refused"},
		{login, "connection closed by peer: 403 ACCESS_REFUSED: Login was refused"},
		{missing, "amqp: channel 1 closed by peer: 404 NOT_FOUND: no queue '"},
	} {
		require.Error(t, tc.err)
		msg := tc.err.Error()
		require.Contains(t, msg, tc.want)
		require.Equal(t, 1, strings.Count(msg, "amqp: "), "one prefix: %s", msg)
		require.NotContains(t, msg, "ACCESS_REFUSED - ")
		require.NotContains(t, msg, "NOT_FOUND - ")
		require.NotContains(t, msg, "tcp: dial")
	}
}
