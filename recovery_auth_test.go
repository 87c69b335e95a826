package warren

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/statemachine"
)

// rotatingAuth is SASL PLAIN whose password the application can change:
// a credentials provider (an OAuth 2 token source, say) in the form the
// handshake asks for, once per connection attempt.
type rotatingAuth struct {
	user     string
	password atomic.Pointer[string]
	asked    atomic.Int32
}

func (a *rotatingAuth) Mechanism() string { return "PLAIN" }

func (a *rotatingAuth) Response() ([]byte, error) {
	a.asked.Add(1)
	return []byte("\x00" + a.user + "\x00" + *a.password.Load()), nil
}

func (a *rotatingAuth) Challenge([]byte) ([]byte, error) {
	return nil, statemachine.ErrUnexpectedChallenge
}

// throwawayUser adds a RabbitMQ user named from prefix, with password and
// every permission on "/", deleted when the test ends.
func throwawayUser(t *testing.T, prefix, password string) string {
	t.Helper()
	user := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	rabbitmqctl(t, "add_user", user, password)
	t.Cleanup(func() { rabbitmqctl(t, "delete_user", user) })
	rabbitmqctl(t, "set_permissions", "-p", "/", user, ".*", ".*", ".*")
	return user
}

// A handshake refused during a recovery (403: the password changed under
// us; 530: the vhost refused) is retried, asking the authenticator for
// credentials on every attempt, and succeeds once it gives the new ones
// (or the permissions are back).
func TestBrokerRecoveryRefusedHandshakeRetriedWithFreshCredentials(t *testing.T) {
	ctx := brokerCtx(t)
	user := throwawayUser(t, "warren-test", "first-password")

	auth := &rotatingAuth{user: user}
	first := "first-password"
	auth.password.Store(&first)
	c := dialURL(t, brokerURL(), Config{
		ConnectionName: user, Auth: []Authenticator{auth},
		Recovery: Recovery{Backoff: Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}},
	})
	events := watchRecovery(c)
	ch := confirmChannel(t, ctx, c)

	// The password changes on the broker, then the connection is closed.
	rabbitmqctl(t, "change_password", user, "second-password")
	rabbitmqctl(t, "close_connection", connectionPid(t, user), "credentials rotated")
	events.waitFor(t, RecoveryLost, 10*time.Second)
	// Attempts with the old password are refused, and retried.
	for refused := 0; refused < 2; {
		e, _ := events.waitFor(t, RecoveryRetrying, 20*time.Second)
		if e.Attempt > 1 {
			require.ErrorIs(t, e.Err, AccessRefused, "the last attempt was refused")
			refused++
		}
	}
	require.Equal(t, ConnRecovering, c.State())
	asked := auth.asked.Load()

	second := "second-password"
	auth.password.Store(&second) // the provider has the new credentials
	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.Greater(t, auth.asked.Load(), asked, "credentials asked for again")
	_, err := confirmPublish(ctx, ch, "", "no-such-queue", Publishing{})
	require.NoError(t, err)

	// 530 on connection.open (the vhost refused) is retried the same way.
	rabbitmqctl(t, "clear_permissions", "-p", "/", user)
	rabbitmqctl(t, "close_connection", connectionPid(t, user), "permissions revoked")
	events.waitFor(t, RecoveryLost, 10*time.Second)
	for refused := false; !refused; {
		e, _ := events.waitFor(t, RecoveryRetrying, 20*time.Second)
		refused = e.Attempt > 1 && errors.Is(e.Err, NotAllowed)
	}
	rabbitmqctl(t, "set_permissions", "-p", "/", user, ".*", ".*", ".*")
	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	_, err = confirmPublish(ctx, ch, "", "no-such-queue", Publishing{})
	require.NoError(t, err)
}
