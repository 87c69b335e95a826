package warren

// Integration tests of logins and of the errors that close a whole
// connection, against a real RabbitMQ (see integration_test.go and
// broker_ops_test.go).

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/driver"
	"go.uber.org/goleak"
)

// brokerUser returns the user name and password of brokerURL.
func brokerUser(t *testing.T) (user, password string) {
	t.Helper()
	u, err := ParseURI(brokerURL())
	require.NoError(t, err)
	return u.Username, u.Password
}

// mechanism is the SASL mechanism the connection logged in with.
func (c *Connection) mechanism() string {
	m := c.lock()
	defer c.unlock(driver.FlushLater)
	return m.Mechanism()
}

func TestBrokerLogin(t *testing.T) {
	user, pass := brokerUser(t)
	good := url.UserPassword(user, pass).String()
	for _, mech := range []string{"plain", "amqplain"} {
		t.Run(mech, func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialURL(t, brokerURLWith(t, good, "/", "?auth_mechanism="+mech), Config{})
			require.Equal(t, strings.ToUpper(mech), c.mechanism(), "only the URI's mechanism is offered")
			require.True(t, c.IsAlive())
			ch := newChannel(t, ctx, c)
			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			require.NotEmpty(t, q.Name)
		})
	}

	t.Run("default mechanisms", func(t *testing.T) {
		c := dialURL(t, brokerURLWith(t, good, "/", ""), Config{})
		require.Equal(t, "PLAIN", c.mechanism(), "PLAIN is preferred, RabbitMQ offers both")
	})

	for _, mech := range []string{"plain", "amqplain"} {
		t.Run("wrong password "+mech, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			ctx := brokerCtx(t)
			uri := brokerURLWith(t, url.UserPassword(user, pass+"-wrong").String(), "/", "?auth_mechanism="+mech)
			c, err := Dial(ctx, uri)
			require.Nil(t, c)
			// RabbitMQ closes with connection.close 403 (not a bare socket
			// close) because Warren announces authentication_failure_close.
			ce := requireConnErr(t, err, AccessRefused)
			require.True(t, errors.Is(err, AccessRefused))
			require.Contains(t, ce.Text, "ACCESS_REFUSED")
			require.Contains(t, ce.Text, strings.ToUpper(mech))
			require.Contains(t, err.Error(), "ACCESS_REFUSED")
			require.NotContains(t, err.Error(), pass+"-wrong", "the password is redacted")
			require.False(t, IsRecoverable(err), "a refused login will be refused again")
			goleak.VerifyNone(t, before)
		})
	}

	t.Run("unknown vhost", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		ctx := brokerCtx(t)
		vhost := fmt.Sprintf("warren-no-such-vhost-%d", time.Now().UnixNano())
		c, err := Dial(ctx, brokerURLWith(t, good, vhost, ""))
		require.Nil(t, c)
		ce := requireConnErr(t, err, NotAllowed)
		require.Contains(t, ce.Text, "NOT_ALLOWED")
		require.Contains(t, ce.Text, vhost)
		goleak.VerifyNone(t, before)
	})
}

// rabbitmqctl runs the broker's CLI, skipping the test where it cannot.
func rabbitmqctl(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		t.Skip("rabbitmqctl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// connectionPid finds the broker's pid of the connection named name (the
// connection_name client property), formatted for close_connection.
// `rabbitmqctl list_connections pid client_properties` would do too, but
// it takes 5 to 10 seconds on this broker; eval takes one.
func connectionPid(t *testing.T, name string) string {
	t.Helper()
	expr := fmt.Sprintf(`Name = <<"%s">>, `+
		`[rabbit_misc:pid_to_string(P) || P <- rabbit_networking:connections(), `+
		`{client_properties, CP} <- rabbit_networking:connection_info(P, [client_properties]), `+
		`lists:keyfind(<<"connection_name">>, 1, CP) =:= {<<"connection_name">>, longstr, Name}].`, name)
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out = rabbitmqctl(t, "eval", expr)
		if out != "[]" || time.Now().After(deadline) {
			break
		}
	}
	// The answer is an Erlang list of strings: ["<rabbit@host.1.2.0>"].
	pids := strings.Split(strings.Trim(out, "[]"), ",")
	require.Len(t, pids, 1, "connections named %q: %s", name, out)
	pid := strings.Trim(pids[0], `"`)
	require.True(t, strings.HasPrefix(pid, "<") && strings.HasSuffix(pid, ">"), "pid %q", pid)
	return pid
}

func TestBrokerCloseConnectionByOperator(t *testing.T) {
	if u, err := ParseURI(brokerURL()); err == nil && u.Host != "127.0.0.1" && u.Host != "localhost" && u.Host != "::1" {
		t.Skipf("the broker at %s is not the local rabbitmqctl's", u.Addr())
	}
	ctx := brokerCtx(t)
	name := fmt.Sprintf("warren-test-close-%d", time.Now().UnixNano())
	// Recovery off: the close ends the connection (with recovery on, see
	// TestBrokerRecovery*).
	c := dialURL(t, brokerURL(), Config{ConnectionName: name, Recovery: Recovery{Disabled: true}})
	require.Equal(t, name, c.Name())
	closes := c.NotifyClose(make(chan error, 1))
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{NoAck: true})
	require.NoError(t, err)

	pid := connectionPid(t, name)
	out := rabbitmqctl(t, "close_connection", pid, "test reason")
	require.Contains(t, out, "test reason")

	var ce *ConnectionError
	select {
	case err := <-closes:
		require.ErrorAs(t, err, &ce)
	case <-time.After(10 * time.Second):
		t.Fatal("no close notification")
	}
	require.Equal(t, ConnectionForced, ce.Code)
	require.ErrorIs(t, ce, ConnectionForced)
	require.Contains(t, ce.Text, "CONNECTION_FORCED")
	require.Contains(t, ce.Text, "test reason")
	_, open := <-closes
	require.False(t, open, "NotifyClose's channel closes after the error")

	<-c.Done()
	require.False(t, c.IsAlive())
	requireConnErr(t, c.Err(), ConnectionForced)
	require.Same(t, ce, errors.Unwrap(fmt.Errorf("%w", c.Err())))
	require.True(t, IsRecoverable(c.Err()), "320 is worth a reconnect")

	// Everything on the connection fails with the same error.
	requireEnded(t, cons)
	requireConnErr(t, cons.Err(), ConnectionForced)
	// The topology keeps what a reconnecting client would declare again.
	topo := c.Topology()
	require.Equal(t, []DeclaredQueue{{Name: q.Name, ServerNamed: true, Options: QueueOptions{Exclusive: true}}}, topo.Queues)
	require.Equal(t, []DeclaredConsumer{{Queue: q.Name, Tag: cons.Tag, Options: ConsumeOptions{NoAck: true}}}, topo.Consumers)
	_, err = ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.ErrorIs(t, err, ErrClosed)
	requireConnErr(t, err, ConnectionForced)
	_, err = c.Channel(ctx)
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, c.Close(ctx), "closing a closed connection is a no-op")
}

// RabbitMQ refuses four requests of AMQP 0-9-1 by closing the connection
// with 540 NOT_IMPLEMENTED.
func TestBrokerNotImplemented(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(ctx context.Context, ch *Channel) error
		text string
	}{
		{"channel.flow active=false", func(ctx context.Context, ch *Channel) error { return ch.Flow(ctx, false) }, "active=false"},
		{"publish immediate", func(ctx context.Context, ch *Channel) error {
			return ch.Publish(ctx, "", "warren.test.immediate", Publishing{Immediate: true, Body: []byte("now")})
		}, "immediate=true"},
		{"qos prefetch-size", func(ctx context.Context, ch *Channel) error {
			return ch.Qos(ctx, QosOptions{PrefetchSize: 4096})
		}, "prefetch_size!=0"},
		{"recover requeue=false", func(ctx context.Context, ch *Channel) error { return ch.Recover(ctx, false) }, "requeue=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			ctx := brokerCtx(t)
			c := dialURL(t, brokerURL(), Config{})
			closes := c.NotifyClose(make(chan error, 1))
			ch := newChannel(t, ctx, c)
			other := newChannel(t, ctx, c)

			err := tc.op(ctx, ch)
			if tc.name == "publish immediate" {
				require.NoError(t, err, "a publish is asynchronous: the refusal comes later")
			} else {
				ce := requireConnErr(t, err, NotImplemented)
				require.Contains(t, ce.Text, tc.text)
			}
			var ce *ConnectionError
			select {
			case err := <-closes:
				require.ErrorAs(t, err, &ce)
			case <-time.After(10 * time.Second):
				t.Fatal("no close notification")
			}
			require.Equal(t, NotImplemented, ce.Code)
			require.True(t, errors.Is(ce, NotImplemented))
			require.Contains(t, ce.Text, "NOT_IMPLEMENTED")
			require.Contains(t, ce.Text, tc.text)
			<-c.Done()
			require.False(t, c.IsAlive())
			requireConnErr(t, c.Err(), NotImplemented)
			require.False(t, IsRecoverable(c.Err()))
			// The other channel went down with the connection.
			err = other.Publish(ctx, "", "x", Publishing{})
			require.ErrorIs(t, err, ErrClosed)
			require.ErrorIs(t, err, NotImplemented)
			require.NoError(t, c.Close(ctx))
			goleak.VerifyNone(t, before)
		})
	}
}

// RabbitMQ's internal user database accepts connection.update-secret
// (the new secret is not checked against the stored password: the
// internal backend's update_state just keeps the user), so the call
// succeeds and the connection stays usable. Backends with expiring
// credentials (OAuth 2) are the ones that check it.
func TestBrokerUpdateSecret(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialURL(t, brokerURL(), Config{})
	_, pass := brokerUser(t)
	err := c.UpdateSecret(ctx, pass, "rotating credentials")
	require.NoError(t, err)
	require.True(t, c.IsAlive())
	err = c.UpdateSecret(ctx, "not-the-password", "a wrong secret")
	require.NoError(t, err, "the internal backend does not check the secret")
	require.True(t, c.IsAlive())
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Body: []byte("after update-secret")})
	require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name))
}
