package warren

// Integration tests of the exchange, queue, binding, transaction and
// topology operations against a real RabbitMQ (see integration_test.go).
// Every test checks the broker's state through AMQP (passive declares,
// Get, confirmed publishes), not only that the calls returned.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// brokerURL is the broker of the Broker tests as a URI: $AMQP_URL, or
// guest/guest at brokerAddr.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@" + brokerAddr() + "/"
}

// brokerURLWith is brokerURL with user information, vhost or query
// replaced: brokerURLWith("bob:secret", "/", "?auth_mechanism=plain").
func brokerURLWith(t *testing.T, userinfo, vhost, query string) string {
	t.Helper()
	u, err := ParseURI(brokerURL())
	require.NoError(t, err)
	if vhost == "/" {
		vhost = "%2F"
	}
	return u.Scheme + "://" + userinfo + "@" + u.Addr() + "/" + vhost + query
}

// brokerCtx bounds one test's broker calls.
func brokerCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dialURL dials uri with cfg and closes the connection when the test ends.
func dialURL(t *testing.T, uri string, cfg Config) *Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialWith(ctx, uri, DialOptions{Config: cfg})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func newChannel(t *testing.T, ctx context.Context, c *Connection) *Channel {
	t.Helper()
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	return ch
}

// confirmChannel opens a channel in confirm mode, for publishes whose
// routing the test must know has happened.
func confirmChannel(t *testing.T, ctx context.Context, c *Connection) *Channel {
	t.Helper()
	ch := newChannel(t, ctx, c)
	require.NoError(t, ch.ConfirmSelect(ctx))
	return ch
}

// publishConfirmed publishes on ch (in confirm mode) and waits for the
// broker's ack: once it returns, the message sits in every queue it was
// routed to.
func publishConfirmed(t *testing.T, ctx context.Context, ch *Channel, exchange, key string, msg Publishing) *Confirmation {
	t.Helper()
	cf, err := confirmPublish(ctx, ch, exchange, key, msg)
	require.NoError(t, err)
	return cf
}

// confirmPublish is publishConfirmed for goroutines other than the test's:
// a failure, a nack included, is returned.
func confirmPublish(ctx context.Context, ch *Channel, exchange, key string, msg Publishing) (*Confirmation, error) {
	cf, err := ch.PublishWithConfirm(ctx, exchange, key, msg)
	if err != nil {
		return nil, err
	}
	acked, err := cf.Wait(ctx)
	if err == nil && !acked {
		err = fmt.Errorf("publish to %q with key %q was nacked", exchange, key)
	}
	return cf, err
}

// queueDepth returns the ready messages of queue, read with a passive
// declare.
func queueDepth(t *testing.T, ctx context.Context, ch *Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclare(ctx, queue, QueueOptions{Passive: true})
	require.NoError(t, err, "passive declare of %q", queue)
	return q.Messages
}

// requireDepthEventually waits until queue holds want ready messages: for
// changes the broker makes asynchronously (a nack or reject requeueing).
// A passive declare's stat is a priority call in RabbitMQ's queue process
// that can overtake messages queued before it, so it is polled.
func requireDepthEventually(t *testing.T, ctx context.Context, ch *Channel, queue string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := queueDepth(t, ctx, ch, queue)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			require.Equal(t, want, got, "ready messages of %q", queue)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireQueueMissing checks with a passive declare that queue does not
// exist (the 404 closes ch's current incarnation; the next call reopens it).
func requireQueueMissing(t *testing.T, ctx context.Context, ch *Channel, queue string) {
	t.Helper()
	_, err := ch.QueueDeclare(ctx, queue, QueueOptions{Passive: true})
	requireChannelErr(t, err, NotFound)
}

// requireExchangeMissing is requireQueueMissing for an exchange.
func requireExchangeMissing(t *testing.T, ctx context.Context, ch *Channel, exchange string) {
	t.Helper()
	err := ch.ExchangeDeclare(ctx, exchange, "direct", ExchangeOptions{Passive: true})
	requireChannelErr(t, err, NotFound)
}

// requireChannelErr checks that err is a broker-sent channel.close with
// code, matched both with errors.As and errors.Is.
func requireChannelErr(t *testing.T, err error, code ReplyCode) *ChannelError {
	t.Helper()
	require.Error(t, err)
	var ce *ChannelError
	require.ErrorAs(t, err, &ce, "want a *ChannelError %v, got %v", code, err)
	require.Equal(t, code, ce.Code, "error: %v", err)
	require.ErrorIs(t, err, code)
	require.Equal(t, proto.ByPeer, ce.Origin)
	require.True(t, strings.HasPrefix(ce.Text, code.String()), "RabbitMQ's reply text starts with the code's name: %q", ce.Text)
	var conn *ConnectionError
	require.False(t, errors.As(err, &conn), "a channel error is not a connection error")
	return ce
}

// requireConnErr checks that err is a broker-sent connection.close with
// code.
func requireConnErr(t *testing.T, err error, code ReplyCode) *ConnectionError {
	t.Helper()
	require.Error(t, err)
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce, "want a *ConnectionError %v, got %v", code, err)
	require.Equal(t, code, ce.Code, "error: %v", err)
	require.ErrorIs(t, err, code)
	require.Equal(t, proto.ByPeer, ce.Origin)
	return ce
}

func TestBrokerExchangeDeclareKinds(t *testing.T) {
	// One auto-delete exchange of each kind, with a queue bound to it: a
	// matching publish reaches the queue, a non-matching one does not, and
	// removing the only binding deletes the exchange (auto-delete).
	for _, tc := range []struct {
		kind       string
		bindKey    string
		bindArgs   proto.Table
		match      string // routing key that matches
		matchHdrs  proto.Table
		miss       string // routing key that does not (fanout: none)
		missHdrs   proto.Table
		noMissCase bool
	}{
		{kind: "direct", bindKey: "orders", match: "orders", miss: "orders.eu"},
		{kind: "topic", bindKey: "orders.*.created", match: "orders.eu.created", miss: "orders.eu.deleted"},
		{kind: "fanout", bindKey: "ignored", match: "anything", noMissCase: true},
		{kind: "headers", bindArgs: proto.Table{{Name: "x-match", Value: proto.String("all")}, {Name: "region", Value: proto.String("eu")}},
			match: "any-key", matchHdrs: proto.Table{{Name: "region", Value: proto.String("eu")}},
			miss: "any-key", missHdrs: proto.Table{{Name: "region", Value: proto.String("us")}}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialTest(t, Config{})
			ch := newChannel(t, ctx, c)
			pub := confirmChannel(t, ctx, c)
			ex := testQueueName(t) + ".x"

			require.NoError(t, ch.ExchangeDeclare(ctx, ex, tc.kind, ExchangeOptions{AutoDelete: true}))
			require.NoError(t, ch.ExchangeDeclare(ctx, ex, tc.kind, ExchangeOptions{Passive: true}), "passive declare of an existing exchange")
			// Redeclaring with another kind is refused: the exchange really has tc.kind.
			other := "fanout"
			if tc.kind == "fanout" {
				other = "direct"
			}
			err := ch.ExchangeDeclare(ctx, ex, other, ExchangeOptions{AutoDelete: true})
			ce := requireChannelErr(t, err, PreconditionFailed)
			require.Contains(t, ce.Text, "inequivalent arg 'type'")

			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			require.NoError(t, ch.QueueBind(ctx, q.Name, tc.bindKey, ex, BindOptions{Arguments: tc.bindArgs}))

			publishConfirmed(t, ctx, pub, ex, tc.match, Publishing{Properties: proto.Properties{Headers: tc.matchHdrs}, Body: []byte("match")})
			require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name))
			if !tc.noMissCase {
				publishConfirmed(t, ctx, pub, ex, tc.miss, Publishing{Properties: proto.Properties{Headers: tc.missHdrs}, Body: []byte("miss")})
				require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name), "a non-matching publish is not routed")
			}
			d, ok, err := ch.Get(ctx, q.Name, true)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "match", string(d.Body))
			require.Equal(t, ex, d.Exchange)
			require.Equal(t, tc.match, d.RoutingKey)

			require.NoError(t, ch.QueueUnbind(ctx, q.Name, tc.bindKey, ex, UnbindOptions{Arguments: tc.bindArgs}))
			requireExchangeMissing(t, ctx, ch, ex) // auto-delete: its last binding went
		})
	}
}

func TestBrokerExchangeDeclareOptions(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	base := testQueueName(t)

	t.Run("passive missing", func(t *testing.T) {
		inc := ch.Incarnation()
		err := ch.ExchangeDeclare(ctx, base+".missing", "direct", ExchangeOptions{Passive: true})
		ce := requireChannelErr(t, err, NotFound)
		require.Contains(t, ce.Text, "no exchange")
		require.NoError(t, ch.ExchangeDeclare(ctx, "amq.direct", "direct", ExchangeOptions{Passive: true}), "the channel reopens")
		require.Equal(t, inc+1, ch.Incarnation())
	})

	t.Run("durable", func(t *testing.T) {
		ex := base + ".durable"
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{Durable: true}))
		t.Cleanup(func() { _ = ch.ExchangeDelete(context.Background(), ex, ExchangeDeleteOptions{}) })
		// The broker recorded durable=true: a transient redeclare is refused.
		err := ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{})
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "inequivalent arg 'durable'")
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{Durable: true}), "an equivalent redeclare is fine")
		require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{}))
		requireExchangeMissing(t, ctx, ch, ex)
	})

	t.Run("auto-delete", func(t *testing.T) {
		ex := base + ".autodelete"
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "fanout", ExchangeOptions{AutoDelete: true}))
		// Without a binding ever made, an auto-delete exchange stays.
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "fanout", ExchangeOptions{Passive: true}))
		err := ch.ExchangeDeclare(ctx, ex, "fanout", ExchangeOptions{})
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "inequivalent arg 'auto_delete'")
		q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(ctx, q.Name, "", ex, BindOptions{}))
		_, err = ch.QueueDelete(ctx, q.Name, QueueDeleteOptions{}) // removes the binding too
		require.NoError(t, err)
		requireExchangeMissing(t, ctx, ch, ex)
	})

	t.Run("internal", func(t *testing.T) {
		ex := base + ".internal"
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "fanout", ExchangeOptions{Internal: true, AutoDelete: true}))
		q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(ctx, q.Name, "", ex, BindOptions{}))
		// Publishing to an internal exchange closes the channel with 403;
		// the publish itself returns nil (it is asynchronous), the confirm
		// fails with the channel error.
		cf, err := pub.PublishWithConfirm(ctx, ex, "", Publishing{Body: []byte("direct to internal")})
		require.NoError(t, err)
		_, err = cf.Wait(ctx)
		require.ErrorIs(t, err, ErrMaybeSent)
		ce := requireChannelErr(t, err, AccessRefused)
		require.Contains(t, ce.Text, "internal exchange")
		require.Equal(t, 0, queueDepth(t, ctx, ch, q.Name))
		// Through an exchange-to-exchange binding the internal exchange routes.
		src := base + ".internal-src"
		require.NoError(t, ch.ExchangeDeclare(ctx, src, "fanout", ExchangeOptions{AutoDelete: true}))
		require.NoError(t, ch.ExchangeBind(ctx, ex, "", src, BindOptions{}))
		publishConfirmed(t, ctx, pub, src, "", Publishing{Body: []byte("via source")})
		require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name))
		require.Equal(t, uint64(2), pub.Incarnation(), "the publishing channel reopened after its 403")
		require.NoError(t, ch.ExchangeDelete(ctx, src, ExchangeDeleteOptions{}))
		require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{}))
	})

	t.Run("arguments", func(t *testing.T) {
		// alternate-exchange takes effect: unroutable messages of main land
		// in the alternate exchange's queue.
		ae, main := base+".ae", base+".main"
		require.NoError(t, ch.ExchangeDeclare(ctx, ae, "fanout", ExchangeOptions{AutoDelete: true}))
		args := proto.Table{{Name: "alternate-exchange", Value: proto.String(ae)}}
		require.NoError(t, ch.ExchangeDeclare(ctx, main, "direct", ExchangeOptions{AutoDelete: true, Arguments: args}))
		aeq, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(ctx, aeq.Name, "", ae, BindOptions{}))
		mq, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(ctx, mq.Name, "known", main, BindOptions{}))

		publishConfirmed(t, ctx, pub, main, "known", Publishing{Body: []byte("routed")})
		publishConfirmed(t, ctx, pub, main, "unknown", Publishing{Body: []byte("to the AE")})
		require.Equal(t, 1, queueDepth(t, ctx, ch, mq.Name))
		require.Equal(t, 1, queueDepth(t, ctx, ch, aeq.Name))
		d, ok, err := ch.Get(ctx, aeq.Name, true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "to the AE", string(d.Body))
		require.Equal(t, main, d.Exchange, "the delivery names the exchange published to")

		err = ch.ExchangeDeclare(ctx, main, "direct", ExchangeOptions{AutoDelete: true})
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "inequivalent arg 'alternate-exchange'")
		require.NoError(t, ch.ExchangeDelete(ctx, main, ExchangeDeleteOptions{}))
		require.NoError(t, ch.ExchangeDelete(ctx, ae, ExchangeDeleteOptions{}))
	})
}

func TestBrokerExchangeDeleteIfUnused(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	ex := testQueueName(t) + ".x"
	require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{}))
	t.Cleanup(func() { _ = ch.ExchangeDelete(context.Background(), ex, ExchangeDeleteOptions{}) })
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(ctx, q.Name, "k", ex, BindOptions{}))

	err = ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{IfUnused: true})
	ce := requireChannelErr(t, err, PreconditionFailed)
	require.Contains(t, ce.Text, "in use")
	require.Equal(t, uint64(1), ch.Incarnation())
	require.True(t, c.IsAlive())

	// The same Channel works again, and the exchange is still there.
	require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{Passive: true}))
	require.Equal(t, uint64(2), ch.Incarnation())
	require.NoError(t, ch.QueueUnbind(ctx, q.Name, "k", ex, UnbindOptions{Arguments: nil}))
	require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{IfUnused: true}), "unused now")
	requireExchangeMissing(t, ctx, ch, ex)
	// Deleting a missing exchange is not an error in RabbitMQ 3.x.
	require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{}))
}

func TestBrokerExchangeToExchangeBinding(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	returns := pub.NotifyReturn(make(chan Return, 4))
	base := testQueueName(t)
	src, dst := base+".src", base+".dst"
	require.NoError(t, ch.ExchangeDeclare(ctx, src, "topic", ExchangeOptions{AutoDelete: true}))
	require.NoError(t, ch.ExchangeDeclare(ctx, dst, "direct", ExchangeOptions{AutoDelete: true}))
	t.Cleanup(func() {
		_ = ch.ExchangeDelete(context.Background(), src, ExchangeDeleteOptions{})
		_ = ch.ExchangeDelete(context.Background(), dst, ExchangeDeleteOptions{})
	})
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(ctx, q.Name, "eu.orders", dst, BindOptions{}))
	require.NoError(t, ch.ExchangeBind(ctx, dst, "*.orders", src, BindOptions{}))

	// topic src matches "*.orders", then direct dst matches "eu.orders".
	publishConfirmed(t, ctx, pub, src, "eu.orders", Publishing{Mandatory: true, Body: []byte("two hops")})
	publishConfirmed(t, ctx, pub, src, "us.orders", Publishing{Mandatory: true, Body: []byte("stops at dst")})
	require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name))
	r := <-returns
	require.Equal(t, NoRoute, r.ReplyCode)
	require.Equal(t, "us.orders", r.RoutingKey)
	d, ok, err := ch.Get(ctx, q.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "two hops", string(d.Body))
	require.Equal(t, src, d.Exchange)
	require.Equal(t, "eu.orders", d.RoutingKey)

	require.NoError(t, ch.ExchangeUnbind(ctx, dst, "*.orders", src, BindOptions{}))
	// The unbind removed the source's last binding: auto-delete deletes it.
	requireExchangeMissing(t, ctx, ch, src)
	require.NoError(t, ch.ExchangeDeclare(ctx, src, "topic", ExchangeOptions{AutoDelete: true}))
	publishConfirmed(t, ctx, pub, src, "eu.orders", Publishing{Mandatory: true, Body: []byte("unbound")})
	r = <-returns
	require.Equal(t, NoRoute, r.ReplyCode)
	require.Equal(t, "unbound", string(r.Body))
	require.Equal(t, 0, queueDepth(t, ctx, ch, q.Name))
}

func TestBrokerQueueDeclare(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	base := testQueueName(t)

	t.Run("named", func(t *testing.T) {
		name := base + ".named"
		q, err := ch.QueueDeclare(ctx, name, QueueOptions{AutoDelete: true, Arguments: proto.Table{{Name: "x-max-length", Value: proto.Int32(3)}}})
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = ch.QueueDelete(context.Background(), name, QueueDeleteOptions{}) })
		require.Equal(t, Queue{Name: name}, q)
		for i := 0; i < 5; i++ {
			publishConfirmed(t, ctx, pub, "", name, Publishing{Body: []byte{byte(i)}})
		}
		q, err = ch.QueueDeclare(ctx, name, QueueOptions{Passive: true})
		require.NoError(t, err)
		require.Equal(t, Queue{Name: name, Messages: 3}, q, "x-max-length=3 took effect (drop-head)")
		d, ok, err := ch.Get(ctx, name, true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, []byte{2}, d.Body, "the two oldest were dropped")
		// Redeclaring with other arguments is refused.
		_, err = ch.QueueDeclare(ctx, name, QueueOptions{AutoDelete: true})
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "inequivalent arg 'x-max-length'")
		n, err := ch.QueueDelete(ctx, name, QueueDeleteOptions{})
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})

	t.Run("server-named", func(t *testing.T) {
		q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(q.Name, "amq.gen-"), q.Name)
		publishConfirmed(t, ctx, pub, "", q.Name, Publishing{Body: []byte("x")})
		require.Equal(t, 1, queueDepth(t, ctx, ch, q.Name))
		q2, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NotEqual(t, q.Name, q2.Name)
	})

	t.Run("exclusive", func(t *testing.T) {
		name := base + ".exclusive"
		owner := dialTest(t, Config{})
		och := newChannel(t, ctx, owner)
		_, err := och.QueueDeclare(ctx, name, QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, och.ConfirmSelect(ctx))
		publishConfirmed(t, ctx, och, "", name, Publishing{Body: []byte("mine")})
		require.Equal(t, 1, queueDepth(t, ctx, och, name))
		// Another connection may not touch it: 405 RESOURCE_LOCKED.
		_, err = ch.QueueDeclare(ctx, name, QueueOptions{Passive: true})
		ce := requireChannelErr(t, err, ResourceLocked)
		require.Contains(t, ce.Text, "exclusive")
		_, _, err = ch.Get(ctx, name, true)
		requireChannelErr(t, err, ResourceLocked)
		// Closing the owning connection deletes it.
		require.NoError(t, owner.Close(ctx))
		requireQueueMissing(t, ctx, ch, name)
	})

	t.Run("passive missing restores the same channel", func(t *testing.T) {
		c := dialTest(t, Config{})
		ch := newChannel(t, ctx, c)
		id := ch.ID()
		require.Equal(t, uint64(1), ch.Incarnation())
		_, err := ch.QueueDeclare(ctx, base+".missing", QueueOptions{Passive: true})
		ce := requireChannelErr(t, err, NotFound)
		require.True(t, errors.Is(err, NotFound))
		require.Equal(t, id, ce.Channel)
		require.Contains(t, ce.Text, "no queue")
		require.Equal(t, uint64(1), ch.Incarnation(), "reopening waits for the next call")
		require.True(t, c.IsAlive())

		q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.Equal(t, uint64(2), ch.Incarnation())
		require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("after reopening")}))
		d, ok, err := ch.Get(ctx, q.Name, false)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "after reopening", string(d.Body))
		require.NoError(t, d.Ack(false))
		require.Equal(t, 0, queueDepth(t, ctx, ch, q.Name))
	})
}

func TestBrokerQueueBindUnbind(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	base := testQueueName(t)

	t.Run("headers x-match", func(t *testing.T) {
		ex := base + ".headers"
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "headers", ExchangeOptions{AutoDelete: true}))
		all, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		anyq, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		allArgs := proto.Table{{Name: "x-match", Value: proto.String("all")}, {Name: "format", Value: proto.String("pdf")}, {Name: "type", Value: proto.String("report")}}
		anyArgs := proto.Table{{Name: "x-match", Value: proto.String("any")}, {Name: "format", Value: proto.String("pdf")}, {Name: "type", Value: proto.String("report")}}
		require.NoError(t, ch.QueueBind(ctx, all.Name, "", ex, BindOptions{Arguments: allArgs}))
		require.NoError(t, ch.QueueBind(ctx, anyq.Name, "", ex, BindOptions{Arguments: anyArgs}))

		hdr := func(fields ...string) Publishing {
			var h proto.Table
			for i := 0; i < len(fields); i += 2 {
				h = append(h, proto.Field{Name: fields[i], Value: proto.String(fields[i+1])})
			}
			return Publishing{Properties: proto.Properties{Headers: h}, Body: []byte("m")}
		}
		for _, tc := range []struct {
			msg      Publishing
			all, any int // depths after the publish
		}{
			{hdr("format", "pdf"), 0, 1},
			{hdr("format", "pdf", "type", "report"), 1, 2},
			{hdr("type", "log", "format", "zip"), 1, 2},
			{hdr("type", "report", "format", "pdf", "extra", "x"), 2, 3},
		} {
			publishConfirmed(t, ctx, pub, ex, "", tc.msg)
			require.Equal(t, tc.all, queueDepth(t, ctx, ch, all.Name), "x-match=all after %v", tc.msg.Properties.Headers)
			require.Equal(t, tc.any, queueDepth(t, ctx, ch, anyq.Name), "x-match=any after %v", tc.msg.Properties.Headers)
		}
		// Unbinding a headers binding needs its arguments.
		require.NoError(t, ch.QueueUnbind(ctx, anyq.Name, "", ex, UnbindOptions{Arguments: anyArgs}))
		publishConfirmed(t, ctx, pub, ex, "", hdr("format", "pdf", "type", "report"))
		require.Equal(t, 3, queueDepth(t, ctx, ch, all.Name))
		require.Equal(t, 3, queueDepth(t, ctx, ch, anyq.Name), "unbound")
		require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{}))
	})

	t.Run("direct unbind", func(t *testing.T) {
		ex := base + ".direct"
		require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{AutoDelete: true}))
		q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(ctx, q.Name, "a", ex, BindOptions{}))
		require.NoError(t, ch.QueueBind(ctx, q.Name, "b", ex, BindOptions{}))
		publishConfirmed(t, ctx, pub, ex, "a", Publishing{})
		publishConfirmed(t, ctx, pub, ex, "b", Publishing{})
		require.Equal(t, 2, queueDepth(t, ctx, ch, q.Name))
		require.NoError(t, ch.QueueUnbind(ctx, q.Name, "a", ex, UnbindOptions{Arguments: nil}))
		publishConfirmed(t, ctx, pub, ex, "a", Publishing{})
		publishConfirmed(t, ctx, pub, ex, "b", Publishing{})
		require.Equal(t, 3, queueDepth(t, ctx, ch, q.Name), "only b still routes")
		// Binding to a missing exchange: 404.
		err = ch.QueueBind(ctx, q.Name, "a", base+".missing", BindOptions{})
		requireChannelErr(t, err, NotFound)
		require.NoError(t, ch.ExchangeDelete(ctx, ex, ExchangeDeleteOptions{}))
	})
}

func TestBrokerBindDefaultExchangeRefused(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	err = ch.QueueBind(ctx, q.Name, "some-key", "", BindOptions{})
	ce := requireChannelErr(t, err, AccessRefused)
	require.Contains(t, ce.Text, "ACCESS_REFUSED")
	require.Contains(t, ce.Text, "default exchange")
	require.True(t, c.IsAlive(), "403 on bind is a channel error only")
	require.NotContains(t, c.Topology().Bindings, DeclaredBinding{Destination: q.Name, RoutingKey: "some-key"})

	// The channel is restored: the (exclusive, same-connection) queue is still usable.
	require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Body: []byte("still here")}))
	d, ok, err := ch.Get(ctx, q.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "still here", string(d.Body))
	require.Equal(t, uint64(2), ch.Incarnation())
}

func TestBrokerQueuePurgeDelete(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	pub := confirmChannel(t, ctx, c)
	name := testQueueName(t)
	// Not auto-delete: the consumer below must not take the queue with it.
	_, err := ch.QueueDeclare(ctx, name, QueueOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = ch.QueueDelete(context.Background(), name, QueueDeleteOptions{}) })

	for i := 0; i < 7; i++ {
		publishConfirmed(t, ctx, pub, "", name, Publishing{Body: []byte("p")})
	}
	n, err := ch.QueuePurge(ctx, name)
	require.NoError(t, err)
	require.Equal(t, 7, n)
	require.Equal(t, 0, queueDepth(t, ctx, ch, name))
	n, err = ch.QueuePurge(ctx, name)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	// An unacknowledged message is not purged (purge takes ready messages only).
	for i := 0; i < 3; i++ {
		publishConfirmed(t, ctx, pub, "", name, Publishing{Body: []byte("q")})
	}
	held, ok, err := ch.Get(ctx, name, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint32(2), held.MessageCount)
	n, err = ch.QueuePurge(ctx, name)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, held.Nack(false, true)) // back to ready
	requireDepthEventually(t, ctx, ch, name, 1)

	// if-empty refuses a queue holding a message: 406, channel restored.
	_, err = ch.QueueDelete(ctx, name, QueueDeleteOptions{IfEmpty: true})
	ce := requireChannelErr(t, err, PreconditionFailed)
	require.Contains(t, ce.Text, "not empty")
	require.Equal(t, 1, queueDepth(t, ctx, ch, name), "the queue is still there")

	// if-unused refuses a queue with a consumer.
	cons, err := pub.Consume(ctx, name, ConsumeOptions{})
	require.NoError(t, err)
	d := <-cons.Deliveries()
	_, err = ch.QueueDelete(ctx, name, QueueDeleteOptions{IfUnused: true})
	ce = requireChannelErr(t, err, PreconditionFailed)
	require.Contains(t, ce.Text, "in use")
	require.NoError(t, cons.Cancel(ctx))
	for range cons.Deliveries() {
	}
	require.NoError(t, d.Nack(false, true)) // no consumer left: back to ready
	requireDepthEventually(t, ctx, ch, name, 1)

	for i := 0; i < 3; i++ {
		publishConfirmed(t, ctx, pub, "", name, Publishing{Body: []byte("r")})
	}
	require.Equal(t, 4, queueDepth(t, ctx, ch, name))
	n, err = ch.QueueDelete(ctx, name, QueueDeleteOptions{IfUnused: true})
	require.NoError(t, err)
	require.Equal(t, 4, n, "delete returns the message count")
	requireQueueMissing(t, ctx, ch, name)
	// Deleting a missing queue is not an error in RabbitMQ 3.x; it counts 0.
	n, err = ch.QueueDelete(ctx, name, QueueDeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, 0, n)
}

func TestBrokerTransactions(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	tx := newChannel(t, ctx, c)
	obs := newChannel(t, ctx, c)
	q, err := obs.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, tx.TxSelect(ctx))

	t.Run("commit", func(t *testing.T) {
		require.NoError(t, tx.Publish(ctx, "", q.Name, Publishing{Body: []byte("committed")}))
		// A synchronous call on the tx channel proves the broker has the
		// publish; it stays invisible until commit.
		require.NoError(t, tx.ExchangeDeclare(ctx, "amq.direct", "direct", ExchangeOptions{Passive: true}))
		require.Equal(t, 0, queueDepth(t, ctx, obs, q.Name))
		require.NoError(t, tx.TxCommit(ctx))
		require.Equal(t, 1, queueDepth(t, ctx, obs, q.Name))
	})

	t.Run("rollback", func(t *testing.T) {
		require.NoError(t, tx.Publish(ctx, "", q.Name, Publishing{Body: []byte("rolled back")}))
		require.NoError(t, tx.Publish(ctx, "", q.Name, Publishing{Body: []byte("rolled back too")}))
		require.Equal(t, 1, queueDepth(t, ctx, obs, q.Name))
		require.NoError(t, tx.TxRollback(ctx))
		require.Equal(t, 1, queueDepth(t, ctx, obs, q.Name), "rollback discards")
		require.NoError(t, tx.TxCommit(ctx), "an empty commit")
		require.Equal(t, 1, queueDepth(t, ctx, obs, q.Name))
	})

	t.Run("acks in a transaction", func(t *testing.T) {
		d, ok, err := tx.Get(ctx, q.Name, false)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "committed", string(d.Body))
		require.NoError(t, d.Ack(false))
		require.NoError(t, tx.TxRollback(ctx))
		// The ack was rolled back: the message is still unacknowledged
		// (not ready), until the ack is committed.
		require.Equal(t, 0, queueDepth(t, ctx, obs, q.Name))
		require.NoError(t, d.Ack(false))
		require.NoError(t, tx.TxCommit(ctx))
		require.NoError(t, tx.Close(ctx))
		require.Equal(t, 0, queueDepth(t, ctx, obs, q.Name), "committed ack: closing the channel requeues nothing")
	})

	t.Run("commit without select", func(t *testing.T) {
		ch := newChannel(t, ctx, c)
		err := ch.TxCommit(ctx)
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "not transactional")
	})
}

func TestBrokerTopology(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	base := testQueueName(t)
	ex, ex2, qn := base+".x", base+".x2", base+".q"
	exOpts := ExchangeOptions{AutoDelete: true, Arguments: proto.Table{{Name: "x-note", Value: proto.String("t")}}}
	require.NoError(t, ch.ExchangeDeclare(ctx, ex, "topic", exOpts))
	require.NoError(t, ch.ExchangeDeclare(ctx, ex2, "fanout", ExchangeOptions{AutoDelete: true}))
	qOpts := QueueOptions{Exclusive: true, Arguments: proto.Table{{Name: "x-max-length", Value: proto.Int32(10)}}}
	q, err := ch.QueueDeclare(ctx, qn, qOpts)
	require.NoError(t, err)
	srv, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(ctx, q.Name, "a.#", ex, BindOptions{}))
	require.NoError(t, ch.QueueBind(ctx, srv.Name, "", ex2, BindOptions{}))
	require.NoError(t, ch.ExchangeBind(ctx, ex2, "b.*", ex, BindOptions{}))
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{ConsumerTag: "topo-consumer", NoAck: true})
	require.NoError(t, err)
	// Passive declares and failed declares are not recorded.
	other := newChannel(t, ctx, c)
	require.NoError(t, other.ExchangeDeclare(ctx, "amq.topic", "topic", ExchangeOptions{Passive: true}))
	_, err = other.QueueDeclare(ctx, base+".missing", QueueOptions{Passive: true})
	requireChannelErr(t, err, NotFound)
	err = other.ExchangeDeclare(ctx, ex, "direct", ExchangeOptions{})
	requireChannelErr(t, err, PreconditionFailed)

	topo := c.Topology()
	require.Equal(t, []DeclaredExchange{
		{Name: ex, Kind: "topic", Options: exOpts},
		{Name: ex2, Kind: "fanout", Options: ExchangeOptions{AutoDelete: true}},
	}, topo.Exchanges)
	require.Equal(t, []DeclaredQueue{
		{Name: qn, Options: qOpts},
		{Name: srv.Name, ServerNamed: true, Options: QueueOptions{Exclusive: true}},
	}, topo.Queues, "server-named queues appear under their given name")
	require.Equal(t, []DeclaredBinding{
		{Destination: qn, Source: ex, RoutingKey: "a.#"},
		{Destination: srv.Name, Source: ex2},
		{ExchangeToExchange: true, Destination: ex2, Source: ex, RoutingKey: "b.*"},
	}, topo.Bindings)
	require.Equal(t, []DeclaredConsumer{{Queue: qn, Tag: "topo-consumer", Options: ConsumeOptions{ConsumerTag: "topo-consumer", NoAck: true}}}, topo.Consumers)

	// The broker agrees: the e2e binding routes b.x through ex2 to srv.
	require.NoError(t, ch.ConfirmSelect(ctx))
	publishConfirmed(t, ctx, ch, ex, "b.x", Publishing{})
	require.Equal(t, 1, queueDepth(t, ctx, ch, srv.Name))

	require.NoError(t, cons.Cancel(ctx))
	require.Empty(t, c.Topology().Consumers)
	require.NoError(t, ch.ExchangeUnbind(ctx, ex2, "b.*", ex, BindOptions{}))
	require.NoError(t, ch.QueueUnbind(ctx, qn, "a.#", ex, UnbindOptions{Arguments: nil}))
	topo = c.Topology()
	require.Equal(t, []DeclaredBinding{{Destination: srv.Name, Source: ex2}}, topo.Bindings)
	// ex lost its last binding, which the application removed itself:
	// RabbitMQ auto-deleted it, and the record (what a recovery restores)
	// forgets it too.
	requireExchangeMissing(t, ctx, ch, ex)
	require.Equal(t, []DeclaredExchange{{Name: ex2, Kind: "fanout", Options: ExchangeOptions{AutoDelete: true}}}, c.Topology().Exchanges)
	_, err = ch.QueueDelete(ctx, qn, QueueDeleteOptions{})
	require.NoError(t, err)
	topo = c.Topology()
	require.Equal(t, []DeclaredExchange{{Name: ex2, Kind: "fanout", Options: ExchangeOptions{AutoDelete: true}}}, topo.Exchanges)
	require.Equal(t, []DeclaredQueue{{Name: srv.Name, ServerNamed: true, Options: QueueOptions{Exclusive: true}}}, topo.Queues)
	// Deleting an exchange drops its bindings from the record too.
	require.NoError(t, ch.ExchangeDelete(ctx, ex2, ExchangeDeleteOptions{}))
	topo = c.Topology()
	require.Empty(t, topo.Exchanges)
	require.Empty(t, topo.Bindings)
	require.Len(t, topo.Queues, 1)

	// A consumer ends with its channel: closed by the application, or by
	// a channel error (the reopened channel does not consume again).
	for _, end := range []string{"close", "channel error"} {
		cch := newChannel(t, ctx, c)
		cons, err := cch.Consume(ctx, srv.Name, ConsumeOptions{NoAck: true})
		require.NoError(t, err)
		require.Equal(t, []DeclaredConsumer{{Queue: srv.Name, Tag: cons.Tag, Options: ConsumeOptions{NoAck: true}}}, c.Topology().Consumers)
		if end == "close" {
			require.NoError(t, cch.Close(ctx))
		} else {
			_, err = cch.QueueDeclare(ctx, base+".missing", QueueOptions{Passive: true})
			requireChannelErr(t, err, NotFound)
		}
		requireEnded(t, cons)
		require.Empty(t, c.Topology().Consumers, "after a channel %s", end)
	}
}
