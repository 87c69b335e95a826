package warren

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// recorder is an Observer that keeps what it is told. Its Publish hook
// adds an "x-observed" header holding the message id, as a trace-context
// propagator would.
type recorder struct {
	NopObserver // the hooks added later

	mu          sync.Mutex
	publishes   []*recPublish
	returns     []recReturn
	deliveries  []recDelivery
	settles     []SettleInfo
	conns       []ConnectionEvent
	recoveries  []RecoveryEvent
	blocks      []Blocking
	handedOff   int
	ctxValueKey any
}

type recPublish struct {
	r         *recorder
	info      PublishInfo
	ctxValue  any
	result    PublishResult
	published int
	confirmed int
	ack       bool
	err       error
}

type recReturn struct {
	r   Return
	pub PublishObserver
}

type recDelivery struct {
	d    Delivery
	info DeliveryInfo
}

type recDelivered struct{ r *recorder }

func (r *recorder) Publish(ctx context.Context, p *PublishInfo) PublishObserver {
	// The caller's table is shared: add to a copy.
	p.Properties.Headers = append(p.Properties.Headers[:len(p.Properties.Headers):len(p.Properties.Headers)],
		proto.Field{Name: "x-observed", Value: proto.String(p.Properties.MessageID)})
	rp := &recPublish{r: r, info: *p}
	if r.ctxValueKey != nil {
		rp.ctxValue = ctx.Value(r.ctxValueKey)
	}
	r.mu.Lock()
	r.publishes = append(r.publishes, rp)
	r.mu.Unlock()
	return rp
}

func (p *recPublish) Published(res PublishResult) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	p.result = res
	p.published++
}

func (p *recPublish) Confirmed(ack bool, err error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.published == 0 {
		panic("Confirmed before Published")
	}
	p.confirmed++
	p.ack, p.err = ack, err
}

func (r *recorder) Returned(ret *Return, pub PublishObserver) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.returns = append(r.returns, recReturn{r: *ret, pub: pub})
}

func (r *recorder) Delivery(d *Delivery, info DeliveryInfo) DeliveryObserver {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries = append(r.deliveries, recDelivery{d: *d, info: info})
	return recDelivered{r}
}

func (d recDelivered) HandedOff() {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	d.r.handedOff++
}

func (r *recorder) Settled(s SettleInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settles = append(r.settles, s)
}

func (r *recorder) Connection(e ConnectionEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = append(r.conns, e)
}

func (r *recorder) Recovery(e RecoveryEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recoveries = append(r.recoveries, e)
}

func (r *recorder) Blocked(b Blocking) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocks = append(r.blocks, b)
}

// locked runs f with the recorder's lock held.
func (r *recorder) locked(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

// waitUntil polls cond (with the recorder's lock held) until it holds.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var ok bool
		r.locked(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer: %s did not happen", what)
		}
	}
}

type ctxKey struct{}

// Every hook fires with the right data against RabbitMQ: publishes with
// confirms (the header the hook injected arrives), a mandatory publish to
// nowhere comes back tied to its publish, deliveries, nack, redelivery,
// ack and reject, and the connection's opening and clean end.
func TestBrokerObserver(t *testing.T) {
	ctx := brokerCtx(t)
	rec := &recorder{ctxValueKey: ctxKey{}}
	c := dialURL(t, brokerURL(), Config{Observer: rec})
	rec.locked(func() {
		require.Len(t, rec.conns, 1)
		require.Equal(t, ConnectionEvent{Kind: ConnectionOpened, Address: brokerAddr()}, rec.conns[0])
	})

	ch := confirmChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	// A confirmed publish: the hook sees the message and the caller's
	// context, may add a header, and learns the outcome.
	headers := proto.Table{{Name: "app", Value: proto.String("test")}}
	pctx := context.WithValue(ctx, ctxKey{}, "caller")
	cf, err := ch.PublishWithConfirm(pctx, "", q.Name, Publishing{
		Properties: proto.Properties{MessageID: "m1", ContentType: "text/plain", Headers: headers},
		Body:       []byte("hello"),
	})
	require.NoError(t, err)
	acked, err := cf.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
	require.Len(t, headers, 1, "the caller's table is left alone")
	rec.locked(func() {
		require.Len(t, rec.publishes, 1)
		p := rec.publishes[0]
		require.Equal(t, "caller", p.ctxValue)
		require.Equal(t, "", p.info.Exchange)
		require.Equal(t, q.Name, p.info.RoutingKey)
		require.Equal(t, 5, p.info.BodySize)
		require.Equal(t, "m1", p.info.Properties.MessageID)
		require.Equal(t, "text/plain", p.info.Properties.ContentType)
		require.Equal(t, 1, p.published)
		require.Equal(t, PublishResult{Channel: ch.ID(), Confirm: true, Seq: cf.Seq}, p.result)
		require.Equal(t, 1, p.confirmed)
		require.True(t, p.ack)
		require.NoError(t, p.err)
	})

	// A bare Publish on the confirm-mode channel is followed to its
	// confirm all the same.
	require.NoError(t, ch.Publish(ctx, "", q.Name, Publishing{Properties: proto.Properties{MessageID: "m2"}, Body: []byte("second")}))
	rec.waitUntil(t, "the bare publish's confirm", func() bool { return rec.publishes[1].confirmed == 1 })
	rec.locked(func() {
		p := rec.publishes[1]
		require.True(t, p.result.Confirm)
		require.Equal(t, cf.Seq+1, p.result.Seq)
		require.True(t, p.ack)
	})

	// A mandatory publish to nowhere: returned, tied to its publish, then
	// acked.
	nowhere := testQueueName(t) + ".nowhere"
	cf, err = ch.PublishWithConfirm(ctx, "", nowhere, Publishing{Mandatory: true, Body: []byte("lost")})
	require.NoError(t, err)
	acked, err = cf.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
	require.NotNil(t, cf.Returned())
	rec.locked(func() {
		require.Len(t, rec.returns, 1)
		ret := rec.returns[0]
		require.Equal(t, NoRoute, ret.r.ReplyCode)
		require.Equal(t, nowhere, ret.r.RoutingKey)
		require.Equal(t, "lost", string(ret.r.Body))
		require.Same(t, rec.publishes[2], ret.pub, "the return names its publish")
		require.True(t, rec.publishes[2].info.Mandatory)
	})

	// Consuming: each delivery is reported, with the header the publish
	// hook added; nack with requeue, the redelivery, ack, reject.
	cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{})
	require.NoError(t, err)
	d1 := receive(t, ctx, cons)
	require.Equal(t, "m1", d1.Properties.MessageID)
	rec.waitUntil(t, "the first hand-off", func() bool { return rec.handedOff >= 1 })
	rec.locked(func() {
		require.NotEmpty(t, rec.deliveries)
		got := rec.deliveries[0]
		require.Equal(t, DeliveryInfo{Channel: ch.ID(), Queue: q.Name}, got.info)
		require.Equal(t, cons.Tag, got.d.ConsumerTag)
		require.Equal(t, "", got.d.Exchange)
		require.Equal(t, q.Name, got.d.RoutingKey)
		require.False(t, got.d.Redelivered)
		require.Equal(t, d1.DeliveryTag, got.d.DeliveryTag)
		v, ok := got.d.Properties.Headers.Get("x-observed")
		require.True(t, ok, "the injected header arrived: %v", got.d.Properties.Headers)
		require.Equal(t, proto.String("m1"), v)
		v, ok = got.d.Properties.Headers.Get("app")
		require.True(t, ok)
		require.Equal(t, proto.String("test"), v)
	})
	require.NoError(t, d1.Nack(false, true))
	d2 := receive(t, ctx, cons) // m2, then m1 again
	d3 := receive(t, ctx, cons)
	if d2.Properties.MessageID == "m1" {
		d2, d3 = d3, d2
	}
	require.True(t, d3.Redelivered)
	require.NoError(t, d3.Ack(false))
	require.NoError(t, d2.Reject(false))
	rec.waitUntil(t, "three hand-offs", func() bool { return rec.handedOff == 3 })
	rec.locked(func() {
		require.Len(t, rec.deliveries, 3)
		redelivered := 0
		for _, d := range rec.deliveries {
			if d.d.Redelivered {
				redelivered++
			}
		}
		require.Equal(t, 1, redelivered)
		require.Equal(t, []SettleInfo{
			{Kind: SettleNack, Channel: ch.ID(), DeliveryTag: d1.DeliveryTag, Requeue: true, ConsumerTag: cons.Tag},
			{Kind: SettleAck, Channel: ch.ID(), DeliveryTag: d3.DeliveryTag, ConsumerTag: cons.Tag},
			{Kind: SettleReject, Channel: ch.ID(), DeliveryTag: d2.DeliveryTag, ConsumerTag: cons.Tag},
		}, rec.settles)
	})

	require.NoError(t, c.Close(ctx))
	rec.locked(func() {
		require.Len(t, rec.conns, 2)
		require.Equal(t, ConnectionEvent{Kind: ConnectionClosed}, rec.conns[1])
	})
}

// A forced close with recovery on: the observer hears lost, retrying and
// recovered, and a second opening; with recovery off, the close ends the
// connection with the broker's error.
func TestBrokerObserverRecovery(t *testing.T) {
	ctx := brokerCtx(t)
	name := fmt.Sprintf("warren-test-observer-%d", time.Now().UnixNano())
	rec := &recorder{}
	c := dialURL(t, brokerURL(), Config{Observer: rec, ConnectionName: name})
	events := watchRecovery(c)
	ch := confirmChannel(t, ctx, c)

	rabbitmqctl(t, "close_connection", connectionPid(t, name), "observer test")
	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	publishConfirmed(t, ctx, ch, "", "", Publishing{}) // the channel carries on
	rec.locked(func() {
		var kinds []RecoveryEventKind
		for _, e := range rec.recoveries {
			kinds = append(kinds, e.Kind)
		}
		require.GreaterOrEqual(t, len(kinds), 3, "%v", kinds)
		require.Equal(t, RecoveryLost, kinds[0])
		require.Equal(t, RecoveryRetrying, kinds[1])
		require.Equal(t, RecoveryRecovered, kinds[len(kinds)-1])
		requireConnErr(t, rec.recoveries[0].Err, ConnectionForced)
		require.Len(t, rec.conns, 2, "opened, then opened again by the recovery")
		require.Equal(t, ConnectionEvent{Kind: ConnectionOpened, Address: brokerAddr()}, rec.conns[1])
	})

	name2 := name + "-norecovery"
	rec2 := &recorder{}
	c2 := dialURL(t, brokerURL(), Config{Observer: rec2, ConnectionName: name2, Recovery: Recovery{Disabled: true}})
	rabbitmqctl(t, "close_connection", connectionPid(t, name2), "observer test")
	select {
	case <-c2.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end")
	}
	rec2.locked(func() {
		require.Len(t, rec2.conns, 2)
		require.Equal(t, ConnectionClosed, rec2.conns[1].Kind)
		requireConnErr(t, rec2.conns[1].Err, ConnectionForced)
		require.Empty(t, rec2.recoveries)
	})
}

// Blocked and unblocked notifications reach the observer, from a scripted
// broker.
func TestObserverBlocked(t *testing.T) {
	sent := make(chan struct{})
	connector := &netpipe.Connector{Serve: func(n int, server *netpipe.Conn) {
		b := newScripted(t, server)
		if b.handshake(0) != nil {
			return
		}
		b.send(0, &frames.ConnectionBlocked{Reason: "low on memory"})
		b.send(0, &frames.ConnectionUnblocked{})
		close(sent)
		b.serveMethods(nil)
	}}
	defer connector.Wait()
	ctx := brokerCtx(t)
	rec := &recorder{}
	conn, err := Connect(ctx, connector, Config{Observer: rec, Recovery: Recovery{Disabled: true}})
	require.NoError(t, err)
	<-sent
	rec.waitUntil(t, "blocked and unblocked", func() bool { return len(rec.blocks) == 2 })
	require.NoError(t, conn.Close(ctx))
	rec.locked(func() {
		require.Equal(t, []Blocking{{Active: true, Reason: "low on memory", Changes: 1}, {Changes: 1}}, rec.blocks)
		require.Len(t, rec.conns, 2)
		require.Equal(t, ConnectionOpened, rec.conns[0].Kind)
		require.NotEmpty(t, rec.conns[0].Address)
		require.Equal(t, ConnectionEvent{Kind: ConnectionClosed}, rec.conns[1])
	})
}

// Publishers sharing a channel each get their own publish state: every
// publish is reported once, and every one is confirmed (a scripted broker
// that acks each publish; run under -race).
func TestObserverConcurrentPublishers(t *testing.T) {
	rec := &recorder{}
	ctx, _, ch := openAllocPeer(t, Config{Observer: rec}, true, nil)
	const goroutines, each = 4, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				msg := Publishing{Properties: proto.Properties{MessageID: fmt.Sprintf("%d-%d", g, i)}}
				if i%2 == 0 {
					if err := ch.Publish(ctx, "", "q", msg); err != nil {
						errs <- err
						return
					}
					continue
				}
				cf, err := ch.PublishWithConfirm(ctx, "", "q", msg)
				if err == nil {
					_, err = cf.Wait(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rec.waitUntil(t, "every confirm", func() bool {
		for _, p := range rec.publishes {
			if p.confirmed != 1 {
				return false
			}
		}
		return len(rec.publishes) == goroutines*each
	})
	rec.locked(func() {
		seen := map[string]bool{}
		for _, p := range rec.publishes {
			require.Equal(t, 1, p.published)
			require.True(t, p.result.Confirm)
			require.True(t, p.ack)
			seen[p.info.Properties.MessageID] = true
		}
		require.Len(t, seen, goroutines*each, "each publish seen once, with its own message")
	})
}
