package otelwarren

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/internal/testenv"
	"github.com/warren-amqp/warren/proto"
)

// TestMain skips the tests that need RabbitMQ (TestBroker…, the
// examples) when none is running, and checks that no goroutine outlives
// the tests.
func TestMain(m *testing.M) {
	testenv.SkipWithoutBroker("otelwarren", brokerAddr(), "^(TestBroker|Example)")
	goleak.VerifyTestMain(m)
}

// brokerAddr is the RabbitMQ the tests use.
func brokerAddr() string {
	if a := os.Getenv("WARREN_BROKER_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5672"
}

func brokerURL() string { return "amqp://guest:guest@" + brokerAddr() + "/" }

// rig is an Observer with in-memory exporters.
type rig struct {
	obs    *Observer
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func newRig(t *testing.T, opts Options) *rig {
	r := &rig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	opts.TracerProvider, opts.MeterProvider, opts.Propagator = r.tp, mp, propagation.TraceContext{}
	var err error
	r.obs, err = New(opts)
	require.NoError(t, err)
	return r
}

// dial connects to RabbitMQ with the rig's observer, closing the
// connection when the test ends.
func (r *rig) dial(t *testing.T, ctx context.Context, name string) *warren.Connection {
	t.Helper()
	c, err := warren.DialWith(ctx, brokerURL(), warren.DialOptions{Config: warren.Config{Observer: r.obs, ConnectionName: name}})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// ended waits for an ended span named name and returns it.
func (r *rig) ended(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, s := range r.spans.Ended() {
			if s.Name() == name {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ended span %q", name)
		}
	}
}

// metrics collects the metrics, by name.
func (r *rig) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// sum returns the sum of a counter's data points whose attributes include
// with.
func sum(t *testing.T, ms map[string]metricdata.Metrics, name string, with ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		return 0
	}
	data, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T", name, m.Data)
	var n int64
	for _, dp := range data.DataPoints {
		if hasAll(dp.Attributes, with) {
			n += dp.Value
		}
	}
	return n
}

func hasAll(set attribute.Set, with []attribute.KeyValue) bool {
	for _, kv := range with {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// attrs returns a span's attributes as a map.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// One trace spans a publish and its consumption: the producer span is a
// child of the caller's span, the process span a child of the producer
// span (and linked to it), the application finds the creation context in
// the delivery; the metrics count what happened.
func TestBrokerTracePublishToConsume(t *testing.T) {
	for _, linkOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("LinkOnly=%v", linkOnly), func(t *testing.T) {
			testTracePublishToConsume(t, linkOnly)
		})
	}
}

func testTracePublishToConsume(t *testing.T, linkOnly bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRig(t, Options{LinkOnly: linkOnly})
	c := r.dial(t, ctx, "")
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))
	base := fmt.Sprintf("warren.otel.%d", time.Now().UnixNano())
	ex, qn := base+".x", base+".q"
	require.NoError(t, ch.ExchangeDeclare(ctx, ex, "direct", warren.ExchangeOptions{AutoDelete: true}))
	t.Cleanup(func() { _ = ch.ExchangeDelete(context.Background(), ex, warren.ExchangeDeleteOptions{}) })
	_, err = ch.QueueDeclare(ctx, qn, warren.QueueOptions{Exclusive: true})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = ch.QueueDelete(context.Background(), qn, warren.QueueDeleteOptions{}) })
	require.NoError(t, ch.QueueBind(ctx, qn, "k", ex, warren.BindOptions{}))

	rootCtx, root := r.tp.Tracer("test").Start(ctx, "root")
	cf, err := ch.PublishWithConfirm(rootCtx, ex, "k", warren.Publishing{
		Properties: proto.Properties{MessageID: "id-1", Headers: proto.Table{{Name: "app", Value: proto.String("x")}}},
		Body:       []byte("hello"),
	})
	require.NoError(t, err)
	acked, err := cf.Wait(ctx)
	require.NoError(t, err)
	require.True(t, acked)
	root.End()

	// Mandatory, to a routing key nothing is bound with: returned.
	cf, err = ch.PublishWithConfirm(ctx, ex, "nowhere", warren.Publishing{Mandatory: true, Body: []byte("lost")})
	require.NoError(t, err)
	_, err = cf.Wait(ctx)
	require.NoError(t, err)
	require.NotNil(t, cf.Returned())

	cons, err := ch.Consume(ctx, qn, warren.ConsumeOptions{})
	require.NoError(t, err)
	var d warren.Delivery
	select {
	case d = <-cons.Deliveries():
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	require.NoError(t, d.Ack(false))
	tp, ok := d.Properties.Headers.Get("traceparent")
	require.True(t, ok, "trace context travelled in the headers: %v", d.Properties.Headers)
	app, _ := d.Properties.Headers.Get("app")
	require.Equal(t, proto.String("x"), app, "the application's headers are kept")

	pub := r.ended(t, "publish "+ex)
	proc := r.ended(t, "process "+qn)
	rootSC := root.SpanContext()

	// The producer span: a child of the caller's.
	require.Equal(t, trace.SpanKindProducer, pub.SpanKind())
	require.Equal(t, rootSC.TraceID(), pub.SpanContext().TraceID())
	require.Equal(t, rootSC.SpanID(), pub.Parent().SpanID())
	s, _ := tp.AsString()
	require.Contains(t, s, pub.SpanContext().SpanID().String(), "the producer span's context was injected")
	pa := attrs(pub)
	require.Equal(t, "rabbitmq", pa["messaging.system"].AsString())
	require.Equal(t, "send", pa["messaging.operation.type"].AsString())
	require.Equal(t, "publish", pa["messaging.operation.name"].AsString())
	require.Equal(t, ex, pa["messaging.destination.name"].AsString())
	require.Equal(t, "k", pa["messaging.rabbitmq.destination.routing_key"].AsString())
	require.Equal(t, "id-1", pa["messaging.message.id"].AsString())
	require.Equal(t, int64(5), pa["messaging.message.body.size"].AsInt64())
	host, port, _ := strings.Cut(brokerAddr(), ":")
	require.Equal(t, host, pa["server.address"].AsString())
	require.Equal(t, port, fmt.Sprint(pa["server.port"].AsInt64()))
	require.Equal(t, codes.Unset, pub.Status().Code)

	// The process span: same trace and a child of the producer span (or,
	// LinkOnly, a new trace); linked to it either way.
	require.Equal(t, trace.SpanKindConsumer, proc.SpanKind())
	if linkOnly {
		require.NotEqual(t, rootSC.TraceID(), proc.SpanContext().TraceID())
		require.False(t, proc.Parent().IsValid())
	} else {
		require.Equal(t, rootSC.TraceID(), proc.SpanContext().TraceID())
		require.Equal(t, pub.SpanContext().SpanID(), proc.Parent().SpanID())
	}
	require.Len(t, proc.Links(), 1)
	require.Equal(t, pub.SpanContext().TraceID(), proc.Links()[0].SpanContext.TraceID())
	require.Equal(t, pub.SpanContext().SpanID(), proc.Links()[0].SpanContext.SpanID())
	ca := attrs(proc)
	require.Equal(t, "rabbitmq", ca["messaging.system"].AsString())
	require.Equal(t, "process", ca["messaging.operation.type"].AsString())
	require.Equal(t, ex, ca["messaging.destination.name"].AsString())
	require.Equal(t, qn, ca["messaging.destination.subscription.name"].AsString())
	require.Equal(t, "k", ca["messaging.rabbitmq.destination.routing_key"].AsString())
	require.Equal(t, int64(d.DeliveryTag), ca["messaging.rabbitmq.message.delivery_tag"].AsInt64())
	require.Equal(t, "id-1", ca["messaging.message.id"].AsString())
	require.False(t, ca["warren.message.redelivered"].AsBool())

	// The application's own work goes under the creation context.
	appSC := trace.SpanContextFromContext(r.obs.ContextFor(ctx, &d))
	require.Equal(t, pub.SpanContext().SpanID(), appSC.SpanID())

	// The returned publish's span says so.
	var returned sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if attrs(s)["messaging.rabbitmq.destination.routing_key"].AsString() == "nowhere" {
			returned = s
		}
	}
	require.NotNil(t, returned)
	require.Len(t, returned.Events(), 1)
	require.Equal(t, "returned", returned.Events()[0].Name)

	ms := r.metrics(t)
	require.Equal(t, int64(2), sum(t, ms, "messaging.client.sent.messages", attribute.String("messaging.destination.name", ex)))
	require.Equal(t, int64(2), sum(t, ms, "warren.client.confirmed.messages", attribute.String("warren.confirm.outcome", "ack")))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.returned.messages"))
	require.Equal(t, int64(1), sum(t, ms, "messaging.client.consumed.messages"))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.settled.messages", attribute.String("messaging.operation.name", "ack")))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.connections", attribute.String("warren.connection.state", "open")))
	hist, ok := ms["warren.client.confirm.duration"].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	var n uint64
	for _, dp := range hist.DataPoints {
		n += dp.Count
		require.Positive(t, dp.Sum)
	}
	require.Equal(t, uint64(2), n)

	require.NoError(t, c.Close(ctx))
	ms = r.metrics(t)
	require.Zero(t, sum(t, ms, "warren.client.connections"), "no connection left open")
}

// A forced close with recovery: the connection counts as recovering, then
// open again, and the recovery is counted.
func TestBrokerRecoveryMetrics(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRig(t, Options{})
	name := fmt.Sprintf("warren-otel-test-%d", time.Now().UnixNano())
	c := r.dial(t, ctx, name)
	events := c.NotifyRecovery(make(chan warren.RecoveryEvent, 16))
	ch, err := c.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, ch.ConfirmSelect(ctx))

	closeConnection(t, name)
	for e := range events {
		if e.Kind == warren.RecoveryRecovered {
			break
		}
		require.NotEqual(t, warren.RecoveryGaveUp, e.Kind, "%v", e)
	}
	cf, err := ch.PublishWithConfirm(ctx, "", "warren.otel.nowhere", warren.Publishing{})
	require.NoError(t, err)
	_, err = cf.Wait(ctx)
	require.NoError(t, err)

	ms := r.metrics(t)
	require.Equal(t, int64(1), sum(t, ms, "warren.client.recoveries", attribute.String("warren.recovery.outcome", "recovered")))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.connections", attribute.String("warren.connection.state", "open")))
	require.Zero(t, sum(t, ms, "warren.client.connections", attribute.String("warren.connection.state", "recovering")))
}

// closeConnection closes the broker's side of the connection named name,
// as an operator would.
func closeConnection(t *testing.T, name string) {
	t.Helper()
	expr := fmt.Sprintf(`[rabbit_misc:pid_to_string(P) || P <- rabbit_networking:connections(), `+
		`{client_properties, CP} <- rabbit_networking:connection_info(P, [client_properties]), `+
		`lists:keyfind(<<"connection_name">>, 1, CP) =:= {<<"connection_name">>, longstr, <<"%s">>}].`, name)
	var pid string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command("rabbitmqctl", "eval", expr).CombinedOutput()
		require.NoError(t, err, "%s", out)
		pid = strings.Trim(strings.TrimSpace(string(out)), `[]"`)
		if pid != "" {
			break
		}
		require.False(t, time.Now().After(deadline), "connection %q not found", name)
	}
	out, err := exec.Command("rabbitmqctl", "close_connection", pid, "otelwarren test").CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// The blocked time is added when the connection unblocks, and the state
// follows the connection events (no broker needed: the hooks are called
// directly).
func TestBlockedTimeAndState(t *testing.T) {
	r := newRig(t, Options{})
	r.obs.Connection(warren.ConnectionEvent{Kind: warren.ConnectionOpened, Address: "broker.example:5672"})
	r.obs.Blocked(warren.Blocking{Active: true, Reason: "low on memory", Changes: 1})
	time.Sleep(20 * time.Millisecond)
	r.obs.Blocked(warren.Blocking{Changes: 1})
	r.obs.Recovery(warren.RecoveryEvent{Kind: warren.RecoveryLost})
	ms := r.metrics(t)
	sumF, ok := ms["warren.client.blocked.duration"].Data.(metricdata.Sum[float64])
	require.True(t, ok)
	require.Len(t, sumF.DataPoints, 1)
	require.GreaterOrEqual(t, sumF.DataPoints[0].Value, 0.02)
	require.Equal(t, int64(1), sum(t, ms, "warren.client.connections", attribute.String("warren.connection.state", "recovering")))
	require.Zero(t, sum(t, ms, "warren.client.connections", attribute.String("warren.connection.state", "open")))
	r.obs.Recovery(warren.RecoveryEvent{Kind: warren.RecoveryGaveUp})
	ms = r.metrics(t)
	require.Zero(t, sum(t, ms, "warren.client.connections"))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.recoveries", attribute.String("warren.recovery.outcome", "gave_up")))
	require.Equal(t, []attribute.KeyValue{attribute.String("server.address", "broker.example"), attribute.Int("server.port", 5672)},
		r.obs.serverAttrs())
}

// A nacked or lost confirm marks the span as an error and is counted by
// outcome (hooks called directly).
func TestConfirmOutcomes(t *testing.T) {
	r := newRig(t, Options{})
	for i, outcome := range []string{"nack", "lost"} {
		po := r.obs.Publish(context.Background(), &warren.PublishInfo{Exchange: "x", RoutingKey: "k"})
		po.Published(warren.PublishResult{Channel: 1, Confirm: true, Seq: uint64(i + 1)})
		if outcome == "nack" {
			po.Confirmed(false, nil)
		} else {
			po.Confirmed(false, fmt.Errorf("%w: connection lost", warren.ErrMaybeSent))
		}
	}
	spans := r.spans.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.Equal(t, codes.Error, spans[1].Status().Code)
	require.Equal(t, "maybe_sent", attrs(spans[1])["error.type"].AsString())
	ms := r.metrics(t)
	require.Equal(t, int64(1), sum(t, ms, "warren.client.confirmed.messages", attribute.String("warren.confirm.outcome", "nack")))
	require.Equal(t, int64(1), sum(t, ms, "warren.client.confirmed.messages", attribute.String("warren.confirm.outcome", "lost")))
}
