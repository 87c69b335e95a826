package warren

// Integration tests of publisher confirms and mandatory returns against a
// real RabbitMQ (see integration_test.go and broker_ops_test.go).

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// returnCollector gathers a channel's basic.returns in arrival order.
type returnCollector struct {
	mu   sync.Mutex
	rets []Return
	got  chan struct{} // signalled after each return
}

func collectReturns(ch *Channel) *returnCollector {
	rc := &returnCollector{got: make(chan struct{}, 1)}
	forward(ch.NotifyReturn(make(chan Return)), func(r Return) {
		rc.mu.Lock()
		rc.rets = append(rc.rets, r)
		rc.mu.Unlock()
		select {
		case rc.got <- struct{}{}:
		default:
		}
	})
	return rc
}

// waitFor waits until a return with routing key sentinel arrived and
// returns every return before it. Returns are received in order, so once
// the sentinel's has run, every earlier return has been seen: this proves
// that no other return is coming for earlier publishes.
func (rc *returnCollector) waitFor(t *testing.T, ctx context.Context, sentinel string) []Return {
	t.Helper()
	for {
		rc.mu.Lock()
		for i, r := range rc.rets {
			if r.RoutingKey == sentinel {
				out := append([]Return(nil), rc.rets[:i]...)
				rc.rets = rc.rets[i+1:]
				rc.mu.Unlock()
				return out
			}
		}
		rc.mu.Unlock()
		select {
		case <-rc.got:
		case <-ctx.Done():
			t.Fatalf("the sentinel return %q never came", sentinel)
		}
	}
}

func TestBrokerMandatoryReturn(t *testing.T) {
	for _, confirm := range []bool{false, true} {
		t.Run(fmt.Sprintf("confirm=%v", confirm), func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialTest(t, Config{})
			ch := newChannel(t, ctx, c)
			rc := collectReturns(ch)
			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			if confirm {
				require.NoError(t, ch.ConfirmSelect(ctx))
			}
			nowhere := testQueueName(t) + ".nowhere"
			props := proto.Properties{ContentType: "text/plain", MessageID: "m-1", Headers: proto.Table{{Name: "k", Value: proto.Int32(7)}}}

			type pub struct {
				key       string
				mandatory bool
				returned  bool
			}
			pubs := []pub{
				{q.Name, true, false},
				{nowhere, true, true},
				{q.Name, false, false},
				{nowhere, true, true},
				{nowhere, false, false}, // unroutable, not mandatory: dropped silently
				{q.Name, true, false},
			}
			var cfs []*Confirmation
			for i, p := range pubs {
				msg := Publishing{Mandatory: p.mandatory, Properties: props, Body: []byte(fmt.Sprintf("body %d", i))}
				if confirm {
					cf, err := ch.PublishWithConfirm(ctx, "", p.key, msg)
					require.NoError(t, err)
					require.Equal(t, uint64(i+1), cf.Seq)
					cfs = append(cfs, cf)
				} else {
					_, err := ch.PublishWithConfirm(ctx, "", p.key, msg)
					require.ErrorIs(t, err, ErrNotConfirmMode, "nothing is sent")
					require.NoError(t, ch.Publish(ctx, "", p.key, msg))
				}
			}
			sentinel := nowhere + ".sentinel"
			require.NoError(t, ch.Publish(ctx, "", sentinel, Publishing{Mandatory: true}))
			rets := rc.waitFor(t, ctx, sentinel)

			var want []int
			for i, p := range pubs {
				if p.returned {
					want = append(want, i)
				}
			}
			require.Len(t, rets, len(want))
			for j, i := range want {
				r := rets[j]
				require.Equal(t, NoRoute, r.ReplyCode)
				require.Equal(t, "NO_ROUTE", r.ReplyText)
				require.Equal(t, "", r.Exchange)
				require.Equal(t, nowhere, r.RoutingKey)
				require.Equal(t, fmt.Sprintf("body %d", i), string(r.Body))
				wantProps := props
				wantProps.Flags = props.PresentFlags()
				require.Equal(t, wantProps, r.Properties)
				if confirm {
					require.Equal(t, uint64(i+1), r.PublishSeq, "the return names its publish")
				} else {
					require.Zero(t, r.PublishSeq)
				}
			}
			for i, cf := range cfs {
				acked, err := cf.Wait(ctx)
				require.NoError(t, err)
				require.True(t, acked, "RabbitMQ acks unroutable publishes too (publish %d)", i)
				if pubs[i].returned {
					require.NotNil(t, cf.Returned(), "publish %d was returned", i)
					require.Equal(t, cf.Seq, cf.Returned().PublishSeq)
					require.Equal(t, fmt.Sprintf("body %d", i), string(cf.Returned().Body))
				} else {
					require.Nil(t, cf.Returned(), "publish %d was routed or dropped", i)
				}
			}
			require.Equal(t, 3, queueDepth(t, ctx, ch, q.Name))
		})
	}
}

// A larger confirm batch mixing routed and returned publishes: each
// return must still be tied to the right publish.
func TestBrokerConfirmReturnsBatch(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	rc := collectReturns(ch)
	nowhere := testQueueName(t) + ".nowhere"
	const n = 2000
	unroutable := func(i int) bool { return i%7 == 3 || i%11 == 0 }
	cfs := make([]*Confirmation, n)
	routed := 0
	for i := range cfs {
		key := q.Name
		if unroutable(i) {
			key = nowhere
		} else {
			routed++
		}
		cfs[i], err = ch.PublishWithConfirm(ctx, "", key, Publishing{Mandatory: true, Body: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	for i, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err)
		require.True(t, acked)
		if unroutable(i) {
			require.NotNil(t, cf.Returned(), "publish %d", i)
			require.Equal(t, fmt.Sprint(i), string(cf.Returned().Body))
		} else {
			require.Nil(t, cf.Returned(), "publish %d", i)
		}
	}
	require.NoError(t, ch.Publish(ctx, "", nowhere+".sentinel", Publishing{Mandatory: true}))
	rets := rc.waitFor(t, ctx, nowhere+".sentinel")
	require.Len(t, rets, n-routed)
	require.Equal(t, routed, queueDepth(t, ctx, ch, q.Name))
}

// confirmCoverage checks that confirms (single and multiple) cover each
// sequence number exactly once.
type confirmCoverage struct {
	mu      sync.Mutex
	seen    []bool // index seq-1
	acked   []bool // index seq-1: settled by an ack (else a nack)
	low     uint64 // every seq below low is covered
	covered int
	acks    int // confirm frames seen
	nacks   int
	errs    []string
	full    chan struct{}
}

func newConfirmCoverage(n int) *confirmCoverage {
	return &confirmCoverage{seen: make([]bool, n), acked: make([]bool, n), low: 1, full: make(chan struct{})}
}

func (cc *confirmCoverage) add(cf ConfirmNotice) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cf.Ack {
		cc.acks++
	} else {
		cc.nacks++
	}
	tag := cf.DeliveryTag
	if tag == 0 || tag > uint64(len(cc.seen)) {
		cc.errs = append(cc.errs, fmt.Sprintf("tag %d out of range", tag))
		return
	}
	if !cf.Multiple {
		if cc.seen[tag-1] {
			cc.errs = append(cc.errs, fmt.Sprintf("tag %d confirmed twice", tag))
			return
		}
		cc.seen[tag-1] = true
		cc.acked[tag-1] = cf.Ack
		cc.covered++
	} else {
		fresh := 0
		for s := cc.low; s <= tag; s++ {
			if !cc.seen[s-1] {
				cc.seen[s-1] = true
				cc.acked[s-1] = cf.Ack
				cc.covered++
				fresh++
			}
		}
		if fresh == 0 {
			cc.errs = append(cc.errs, fmt.Sprintf("multiple confirm up to %d covers nothing new", tag))
		}
	}
	for cc.low <= uint64(len(cc.seen)) && cc.seen[cc.low-1] {
		cc.low++
	}
	if cc.covered == len(cc.seen) {
		close(cc.full)
	}
}

func TestBrokerConfirm100k(t *testing.T) {
	t.Parallel() // the longest test (5 to 40 s, with the broker's CPU): overlap it with the other parallel ones
	const n = 100_000
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	cov := newConfirmCoverage(n)
	forward(ch.NotifyConfirm(make(chan ConfirmNotice, 64)), cov.add)

	body := make([]byte, 64)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	start := time.Now()
	cfs := make([]*Confirmation, n)
	for i := range cfs {
		cfs[i], err = ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Body: body})
		require.NoError(t, err)
	}
	for i, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err, "publish %d", i)
		if !acked {
			t.Fatalf("publish %d (seq %d) was nacked", i, cf.Seq)
		}
		if cf.Seq != uint64(i+1) {
			t.Fatalf("publish %d has seq %d", i, cf.Seq)
		}
	}
	t.Logf("%d publishes confirmed in %v", n, time.Since(start))
	require.Equal(t, n, queueDepth(t, ctx, ch, q.Name))

	select {
	case <-cov.full:
	case <-ctx.Done():
		t.Fatal("the confirm callbacks never covered every publish")
	}
	cov.mu.Lock()
	defer cov.mu.Unlock()
	require.Empty(t, cov.errs)
	require.Equal(t, n, cov.covered)
	require.Equal(t, uint64(n+1), cov.low)
	require.Zero(t, cov.nacks)
	t.Logf("%d ack frames for %d publishes", cov.acks, n)
	// Deleting the queue counts them once more on the broker's side.
	deleted, err := ch.QueueDelete(ctx, q.Name, QueueDeleteOptions{})
	require.NoError(t, err)
	require.Equal(t, n, deleted)
}

func TestBrokerConfirmNack(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true, Arguments: proto.Table{
		{Name: "x-max-length", Value: proto.Int32(2)},
		{Name: "x-overflow", Value: proto.String("reject-publish")},
	}})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	cov := newConfirmCoverage(5)
	forward(ch.NotifyConfirm(make(chan ConfirmNotice, 64)), cov.add)

	var cfs []*Confirmation
	for i := 0; i < 5; i++ {
		cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Body: []byte{byte('0' + i)}})
		require.NoError(t, err)
		cfs = append(cfs, cf)
	}
	for i, cf := range cfs {
		acked, err := cf.Wait(ctx)
		require.NoError(t, err, "a nack is an outcome, not an error")
		require.Equal(t, i < 2, acked, "publish %d", i)
		require.Nil(t, cf.Returned())
	}
	require.Equal(t, 2, queueDepth(t, ctx, ch, q.Name))
	<-cov.full
	cov.mu.Lock()
	require.Empty(t, cov.errs)
	// RabbitMQ may settle several rejected publishes with one nack
	// (multiple): what must hold is which publishes each frame settled.
	require.Equal(t, []bool{true, true, false, false, false}, cov.acked, "acked or nacked, publish by publish")
	require.Positive(t, cov.nacks)
	cov.mu.Unlock()
	d, ok, err := ch.Get(ctx, q.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "0", string(d.Body), "the first two were kept")
}

// After a channel error the Channel reopens in confirm mode. The broker
// numbers the new incarnation's publishes from 1 again, but the Channel
// does not: sequence numbers and confirm notices keep increasing, so none
// names two publishes.
func TestBrokerConfirmAfterReopen(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := newChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	notices := ch.NotifyConfirm(make(chan ConfirmNotice, 16))
	for i := 1; i <= 3; i++ {
		cf := publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Body: []byte("before")})
		require.Equal(t, uint64(i), cf.Seq)
	}
	_, err = ch.QueueDeclare(ctx, testQueueName(t)+".missing", QueueOptions{Passive: true})
	requireChannelErr(t, err, NotFound)
	for i := 4; i <= 6; i++ {
		cf := publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Body: []byte("after")})
		require.Equal(t, uint64(i), cf.Seq, "numbering goes on across the reopening")
	}
	require.Equal(t, uint64(2), ch.Incarnation())
	require.Equal(t, 6, queueDepth(t, ctx, ch, q.Name))
	var last uint64
	for last < 6 {
		select {
		case n := <-notices:
			require.True(t, n.Ack)
			require.Greater(t, n.DeliveryTag, last)
			last = n.DeliveryTag
		case <-ctx.Done():
			t.Fatalf("confirm notices stopped at %d", last)
		}
	}
	require.Equal(t, uint64(6), last)
}

// A publish the broker refuses for certain (404: no such exchange) and
// every later one on the channel resolve with ErrNotSent; earlier ones
// are confirmed or, cut off by the channel's end, maybe sent.
func TestBrokerRefusedPublishIsNotSent(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	missing := testQueueName(t) + ".no-such-exchange"
	var cfs []*Confirmation
	const before, after = 20, 20
	for i := range before + 1 + after {
		exchange, key := "", q.Name
		if i == before {
			exchange, key = missing, "x"
		}
		cf, err := ch.PublishWithConfirm(ctx, exchange, key, Publishing{Body: []byte("m")})
		require.NoError(t, err)
		cfs = append(cfs, cf)
	}
	for i, cf := range cfs {
		acked, err := cf.Wait(ctx)
		switch {
		case i < before:
			if err != nil {
				require.ErrorIs(t, err, ErrMaybeSent, "publish %d", i)
				require.NotErrorIs(t, err, ErrNotSent)
			} else {
				require.True(t, acked, "publish %d", i)
			}
		default:
			require.ErrorIs(t, err, ErrNotSent, "publish %d", i)
			require.ErrorIs(t, err, NotFound, "publish %d", i)
			require.NotErrorIs(t, err, ErrMaybeSent)
		}
	}
}
