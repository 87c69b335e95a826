package warren

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Credentials are a username and a secret (a password, or an OAuth 2
// access token for RabbitMQ's OAuth 2 backend) valid until Expiry; a
// zero Expiry never expires.
type Credentials struct {
	Username string
	Secret   string
	Expiry   time.Time
}

// String shows the username and expiry, never the secret.
func (c Credentials) String() string {
	if c.Expiry.IsZero() {
		return fmt.Sprintf("Credentials{Username: %q, Secret: xxxxx}", c.Username)
	}
	return fmt.Sprintf("Credentials{Username: %q, Secret: xxxxx, Expiry: %s}", c.Username, c.Expiry.Format(time.RFC3339))
}

// GoString is String: %#v never shows the secret either.
func (c Credentials) GoString() string { return c.String() }

// CredentialsProvider supplies the credentials a connection
// authenticates with (SASL PLAIN). See Config.Credentials.
type CredentialsProvider interface {
	// Credentials returns current credentials, within ctx. It is called
	// before each connection attempt (the first and every recovery's)
	// and to refresh an expiring secret; it may fetch a new token.
	Credentials(ctx context.Context) (Credentials, error)
}

// CredentialsFunc is a function that is a CredentialsProvider.
type CredentialsFunc func(ctx context.Context) (Credentials, error)

// Credentials calls f.
func (f CredentialsFunc) Credentials(ctx context.Context) (Credentials, error) { return f(ctx) }

// ErrCredentialsExpired ends a connection whose secret expired while
// the CredentialsProvider failed to give a fresh one; it wraps the
// provider's last error.
var ErrCredentialsExpired = errors.New("amqp: credentials expired and could not be refreshed")

// credentialsRefreshTimeout bounds one refresh: the provider's call and
// the update-secret round trip.
const credentialsRefreshTimeout = 30 * time.Second

// credState is a connection's credentials refresh (Config.Credentials):
// when the secret in use will expire, and the timer that refreshes it.
type credState struct {
	mu      sync.Mutex
	expiry  time.Time
	timer   *time.Timer
	stopped bool
	cause   error // set when the connection is closed because the secret expired
}

// refreshAt is when to refresh a secret obtained at now that expires at
// expiry: once four fifths of its lifetime have passed.
func refreshAt(now, expiry time.Time) time.Time {
	return now.Add(expiry.Sub(now) * 4 / 5)
}

// retryAfter is how long to wait before retrying a failed refresh: a
// tenth of the time left, between 1 s and the time left.
func retryAfter(now, expiry time.Time) time.Duration {
	left := expiry.Sub(now)
	return max(left/10, min(time.Second, left))
}

// credentialsFor fetches the credentials for one connection attempt,
// within ctx, and schedules their refresh.
func (c *Connection) credentialsFor(ctx context.Context) ([]Authenticator, error) {
	creds, err := c.cfg.Credentials.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("amqp: credentials: %w", err)
	}
	c.scheduleRefresh(creds.Expiry)
	return []Authenticator{PlainAuth{Username: creds.Username, Password: creds.Secret}}, nil
}

// scheduleRefresh arms the refresh of a secret expiring at expiry.
func (c *Connection) scheduleRefresh(expiry time.Time) {
	s := c.creds
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.expiry = expiry
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if expiry.IsZero() {
		return
	}
	s.timer = time.AfterFunc(time.Until(refreshAt(time.Now(), expiry)), c.refreshCredentials)
}

// retryRefresh arms another refresh after a failed one.
func (c *Connection) retryRefresh(d time.Duration) {
	s := c.creds
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.timer = time.AfterFunc(d, c.refreshCredentials)
	}
}

// stopRefresh stops the refresh for good (the connection has ended).
func (s *credState) stopRefresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// refreshCredentials runs on its timer's goroutine: it asks the provider
// for a fresh secret and hands it to the broker with update-secret. A
// failure is logged and retried until the secret expires; then the
// connection ends with ErrCredentialsExpired. A connection that is
// recovering gets fresh credentials from its next attempt instead.
func (c *Connection) refreshCredentials() {
	ctx, cancel := context.WithTimeout(context.Background(), credentialsRefreshTimeout)
	defer cancel()
	go func() { // the connection's end ends the refresh
		select {
		case <-c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	c.creds.mu.Lock()
	expiry := c.creds.expiry
	c.creds.mu.Unlock()

	creds, err := c.cfg.Credentials.Credentials(ctx)
	if err == nil {
		err = c.UpdateSecret(ctx, creds.Secret, "credentials refresh")
		if err == nil {
			c.log.Info("amqp secret refreshed", "expiry", creds.Expiry)
			c.scheduleRefresh(creds.Expiry)
			return
		}
		err = fmt.Errorf("update-secret: %w", err)
	}
	if c.doneState.Load()&doneEnded != 0 {
		return
	}
	now := time.Now()
	if !now.Before(expiry) {
		c.log.Error("amqp credentials expired and could not be refreshed: closing", "error", err)
		c.expireCredentials(fmt.Errorf("%w: %w", ErrCredentialsExpired, err))
		return
	}
	d := retryAfter(now, expiry)
	c.log.Warn("amqp credentials refresh failed: retrying", "error", err, "retry_in", d, "expiry", expiry)
	c.retryRefresh(d)
}

// expireCredentials ends the connection: its secret expired. Err (and
// NotifyClose) then report err.
func (c *Connection) expireCredentials(err error) {
	c.creds.mu.Lock()
	c.creds.cause = err
	c.creds.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), credentialsRefreshTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

// takeCause returns why the connection was closed for its credentials,
// if it was.
func (s *credState) takeCause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cause
	s.cause = nil
	return err
}
