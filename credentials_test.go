package warren

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/internal/testenv"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

func TestCredentialsRefreshSchedule(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	require.Equal(t, now.Add(80*time.Second), refreshAt(now, now.Add(100*time.Second)))
	for _, tc := range []struct{ left, want time.Duration }{
		{100 * time.Second, 10 * time.Second},
		{5 * time.Second, time.Second},
		{500 * time.Millisecond, 500 * time.Millisecond},
	} {
		require.Equal(t, tc.want, retryAfter(now, now.Add(tc.left)), "%v left", tc.left)
	}
	c := Credentials{Username: "svc", Secret: "t0ps3cret", Expiry: now}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		require.NotContains(t, s, "t0ps3cret")
		require.Contains(t, s, "svc")
	}
}

// secretProvider hands out secret-1, secret-2, … each valid for ttl, and
// fails the calls listed in failing (1-based).
type secretProvider struct {
	ttl     time.Duration
	failing map[int]bool
	calls   atomic.Int32
}

func (p *secretProvider) Credentials(ctx context.Context) (Credentials, error) {
	n := int(p.calls.Add(1))
	if p.failing[n] {
		return Credentials{}, fmt.Errorf("token endpoint unavailable (call %d)", n)
	}
	return Credentials{Username: "svc", Secret: fmt.Sprintf("secret-%d", n), Expiry: time.Now().Add(p.ttl)}, nil
}

// credentialsBroker is a scripted broker that records the PLAIN secret
// of each handshake and each update-secret, and answers update-secret
// as answer says (nil: update-secret-ok).
type credentialsBroker struct {
	mu      sync.Mutex
	logins  []string
	updates []string
	answer  func(n int) frames.Method
}

func (cb *credentialsBroker) serve(t *testing.T, server *netpipe.Conn) {
	b := newScripted(t, server)
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(server, hdr); err != nil {
		return
	}
	b.send(0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US"})
	m, _, err := b.readMethod()
	if err != nil {
		return
	}
	resp := m.(*frames.ConnectionStartOK).Response
	cb.mu.Lock()
	cb.logins = append(cb.logins, resp[strings.LastIndexByte(resp, 0)+1:])
	cb.mu.Unlock()
	b.send(0, &frames.ConnectionTune{ChannelMax: 64, FrameMax: 131072})
	for range 2 { // tune-ok, open
		if _, _, err := b.readMethod(); err != nil {
			return
		}
	}
	b.send(0, &frames.ConnectionOpenOK{})
	b.serveMethods(func(m frames.Method) {
		us, ok := m.(*frames.ConnectionUpdateSecret)
		if !ok {
			return
		}
		cb.mu.Lock()
		cb.updates = append(cb.updates, us.NewSecret)
		n := len(cb.updates)
		cb.mu.Unlock()
		var reply frames.Method = &frames.ConnectionUpdateSecretOK{}
		if cb.answer != nil {
			if r := cb.answer(n); r != nil {
				reply = r
			}
		}
		b.send(0, reply)
	})
}

func (cb *credentialsBroker) seen() (logins, updates []string) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]string(nil), cb.logins...), append([]string(nil), cb.updates...)
}

// The secret is refreshed at four fifths of its lifetime with
// update-secret; a provider failure is logged and retried before the
// secret expires, never fatal until then.
func TestCredentialsRefreshedBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := &credentialsBroker{}
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) { cb.serve(t, server) }}
		defer connector.Wait()
		var logs testenv.Buffer
		p := &secretProvider{ttl: 100 * time.Second, failing: map[int]bool{3: true, 4: true}}
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Credentials: p, Heartbeat: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, err)

		time.Sleep(81 * time.Second) // past 4/5 of secret-1's lifetime
		synctest.Wait()
		logins, updates := cb.seen()
		require.Equal(t, []string{"secret-1"}, logins)
		require.Equal(t, []string{"secret-2"}, updates)

		// secret-2 expires at 181 s; calls 3 and 4 fail and are retried
		// (10 s, then 1 s apart) before it does.
		time.Sleep(100 * time.Second)
		synctest.Wait()
		_, updates = cb.seen()
		require.Equal(t, []string{"secret-2", "secret-5"}, updates)
		require.True(t, conn.IsAlive())
		require.Equal(t, 2, strings.Count(logs.String(), "amqp credentials refresh failed: retrying"))
		require.NotContains(t, logs.String(), "secret-", "secrets are never logged")
		require.NoError(t, conn.Close(ctx))
	})
}

// A provider that cannot refresh an expiring secret ends the connection
// at expiry with ErrCredentialsExpired, wrapping its error.
func TestCredentialsExpiredEndsTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := &credentialsBroker{}
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) { cb.serve(t, server) }}
		defer connector.Wait()
		p := &secretProvider{ttl: 10 * time.Second, failing: map[int]bool{}}
		for i := 2; i < 100; i++ {
			p.failing[i] = true
		}
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Credentials: p, Heartbeat: -1})
		require.NoError(t, err)
		start := time.Now()
		<-conn.Done()
		require.ErrorIs(t, conn.Err(), ErrCredentialsExpired)
		require.ErrorContains(t, conn.Err(), "token endpoint unavailable")
		require.InDelta(t, 10*time.Second, time.Since(start), float64(2*time.Second))
	})
}

// A broker that refuses the refreshed secret closes the connection with
// 530; recovery dials again with fresh credentials from the provider.
func TestCredentialsRefusedUpdateRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := &credentialsBroker{answer: func(n int) frames.Method {
			return &frames.ConnectionClose{ReplyCode: uint16(proto.NotAllowed), ReplyText: "NOT_ALLOWED - secret refused",
				ClassID: 10, MethodID: 70}
		}}
		connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) { cb.serve(t, server) }}
		defer connector.Wait()
		p := &secretProvider{ttl: 100 * time.Second}
		ctx := context.Background()
		conn, err := Connect(ctx, connector, Config{Credentials: p, Heartbeat: -1,
			Recovery: Recovery{Backoff: Backoff{Initial: 100 * time.Millisecond, NoJitter: true}}})
		require.NoError(t, err)
		events := conn.NotifyRecovery(make(chan RecoveryEvent, 16))
		lost := <-events
		require.Equal(t, RecoveryLost, lost.Kind, "ended instead: %v", conn.Err())
		require.ErrorIs(t, lost.Err, ErrSecretRefused)
		for e := range events {
			if e.Kind == RecoveryRecovered {
				break
			}
		}
		logins, updates := cb.seen()
		require.Equal(t, []string{"secret-1", "secret-3"}, logins, "recovery dialled with fresh credentials")
		require.Equal(t, []string{"secret-2"}, updates)
		require.NoError(t, conn.Close(ctx))
	})
}

// Against RabbitMQ: a dedicated user whose password rotates. The
// connection refreshes its secret with update-secret (the internal
// backend accepts it), and after a forced close recovery dials with the
// provider's new password. The user is deleted afterwards.
func TestBrokerCredentialsProvider(t *testing.T) {
	ctx := brokerCtx(t)
	user := throwawayUser(t, "warren-test-creds", "password-1")

	var current atomic.Pointer[string]
	pw := "password-1"
	current.Store(&pw)
	var calls atomic.Int32
	provider := CredentialsFunc(func(ctx context.Context) (Credentials, error) {
		calls.Add(1)
		return Credentials{Username: user, Secret: *current.Load(), Expiry: time.Now().Add(2 * time.Second)}, nil
	})
	var mu sync.Mutex
	var traced []string
	c := dialURL(t, brokerURL(), Config{ConnectionName: user, Credentials: provider,
		Trace: func(dir Direction, ch uint16, frame string) {
			mu.Lock()
			traced = append(traced, dir.String()+" "+frame)
			mu.Unlock()
		},
		Recovery: Recovery{Backoff: Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}}})
	events := watchRecovery(c)
	ch := newChannel(t, ctx, c)

	// Refreshed at 1.6 s of the 2 s lifetime.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(traced, "\n"), "<- connection.update-secret-ok")
	}, 10*time.Second, 50*time.Millisecond, "update-secret answered")
	require.True(t, c.IsAlive())

	// The password rotates; the connection is closed; recovery logs in
	// with the provider's new one.
	pw2 := "password-2"
	rabbitmqctl(t, "change_password", user, pw2)
	current.Store(&pw2)
	before := calls.Load()
	rabbitmqctl(t, "close_connection", connectionPid(t, user), "credentials rotated")
	events.waitFor(t, RecoveryLost, 10*time.Second)
	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	require.Greater(t, calls.Load(), before, "asked again for the recovery")
	_, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	mu.Lock()
	require.NotContains(t, strings.Join(traced, "\n"), "password-", "traced frames never show the secret")
	mu.Unlock()
	var ce *ConnectionError
	require.False(t, errors.As(c.Err(), &ce))
}

func TestIsRecoverableClassification(t *testing.T) {
	notAllowed := &ConnectionError{Reply: proto.Reply{Code: proto.NotAllowed}, Origin: proto.ByPeer}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a broker's 530", notAllowed, false},
		{"a 530 refusing our update-secret", fmt.Errorf("%w: %w", ErrSecretRefused, notAllowed), true},
		{"a broker's 320", &ConnectionError{Reply: proto.Reply{Code: proto.ConnectionForced}, Origin: proto.ByPeer}, true},
		{"a broker's 501", &ConnectionError{Reply: proto.Reply{Code: proto.FrameError}, Origin: proto.ByPeer}, false},
		{"a 501 Warren raised on the broker's bytes", &ConnectionError{Reply: proto.Reply{Code: proto.FrameError}, Origin: proto.ByLocal}, true},
		{"a missed heartbeat", fmt.Errorf("x: %w", ErrHeartbeatTimeout), true},
		{"expired credentials", fmt.Errorf("%w: nope", ErrCredentialsExpired), false},
	} {
		require.Equal(t, tc.want, IsRecoverable(tc.err), tc.name)
	}
}
