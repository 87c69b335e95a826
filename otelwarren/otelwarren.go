// Package otelwarren records Warren's publishes, deliveries and connection
// events with OpenTelemetry: traces, metrics and W3C trace context carried
// in message headers. It is a warren.Observer; install it with
// warren.Config.Observer:
//
//	obs, err := otelwarren.New(otelwarren.Options{}) // the global providers and propagator
//	conn, err := warren.DialWith(ctx, uri, warren.DialOptions{Config: warren.Config{Observer: obs}})
//
// It lives in a module of its own so that Warren's go.mod has no
// OpenTelemetry dependency.
//
// # Conventions
//
// Spans and metrics follow OpenTelemetry's semantic conventions for
// messaging and for RabbitMQ, version 1.43.0 (the go.opentelemetry.io/otel/
// semconv/v1.43.0 package of otel v1.47.0, whose constants are used; its
// schema URL is set on the tracer and meter). Those conventions are
// experimental and may change.
//
// # Spans
//
// A publish (Channel.Publish or PublishWithConfirm) makes a PRODUCER span
// named "publish <exchange>" ("publish" for the default exchange), a child
// of the span in the publish's context, with messaging.system "rabbitmq",
// messaging.operation.type "send", messaging.operation.name "publish",
// messaging.destination.name (the exchange), messaging.rabbitmq.
// destination.routing_key, messaging.message.id (when the message has
// one), messaging.message.conversation_id (its correlation id),
// messaging.message.body.size, server.address and server.port. Its context
// is injected into the message's headers with the propagator (by default
// the global one: W3C traceparent and tracestate with
// propagation.TraceContext), so it is the message's creation context. Outside
// confirm mode the span ends when Publish returns; in confirm mode it ends
// when the broker's ack or nack arrives, so that it covers the publish up
// to its confirm (a nack, a return or a channel that closed first is
// recorded on it: status Error for a nack or a loss, an event "returned"
// for a basic.return).
//
// A delivery to a consumer makes a CONSUMER span named "process <queue>"
// (the queue consumed; "process <exchange>" for a server-named amq.gen-
// queue, whose name says nothing), with messaging.operation.type and name
// "process", messaging.destination.name (the exchange it was published
// to), messaging.destination.subscription.name (the queue), the routing
// key, messaging.rabbitmq.message.delivery_tag, the message id and body
// size, and warren.message.redelivered. Its parent is the creation context
// extracted from the message's headers, so that producer and consumer are
// one trace, and, as the conventions ask of a process span, it also links
// to that context (Options.LinkOnly makes the process span start a new
// trace with the link alone). The span starts when the delivery is handed
// to the application and ends when the hand-off is over: once the delivery
// is in the consumer's Deliveries buffer, or when ConsumeOptions.Handler
// returns (so a Handler's work is inside the span). Work done after
// receiving from Deliveries is the application's: ContextFor gives it the
// message's creation context to start its own spans under.
//
// # Metrics
//
//   - messaging.client.sent.messages: publishes, with error.type when
//     nothing was sent.
//   - messaging.client.consumed.messages: deliveries handed to consumers.
//   - warren.client.confirmed.messages: confirms, by warren.confirm.outcome
//     "ack", "nack" or "lost" (the channel or connection closed first).
//   - warren.client.confirm.duration (s): from publish to its confirm.
//   - warren.client.returned.messages: basic.returns.
//   - warren.client.settled.messages: the application's acks, nacks and
//     rejects, by messaging.operation.name "ack", "nack" or "reject" (with
//     error.type when nothing was sent).
//   - warren.client.connections: connections, by warren.connection.state
//     "open" or "recovering" (an up-down counter: the current number).
//   - warren.client.recoveries: ended recoveries, by warren.recovery.outcome
//     "recovered" or "gave_up".
//   - warren.client.blocked.duration (s): time the broker kept the
//     connection blocked, added when it unblocks.
//
// Every metric carries messaging.system "rabbitmq"; the message counters
// carry the exchange as messaging.destination.name (bounded by the number of
// exchanges, not of messages).
//
// # Cost
//
// The hooks run on the connection's goroutines (see warren.Observer): a
// publish pays for its span, the header injection and a copy of the
// headers table; a delivery for the extraction and its span. bench/README.md
// in Warren's repository measures the hooks themselves.
package otelwarren

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/warren-amqp/warren/otelwarren"

// Options configure an Observer. Zero fields take OpenTelemetry's global
// providers and propagator.
type Options struct {
	// TracerProvider makes the tracer; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter; nil: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator injects the creation context into published headers and
	// extracts it from delivered ones; nil:
	// otel.GetTextMapPropagator() (which is a no-op until the application
	// sets one, e.g. propagation.TraceContext{}).
	Propagator propagation.TextMapPropagator
	// LinkOnly makes each process span the root of a new trace, linked to
	// the message's creation context, instead of its child.
	LinkOnly bool
}

// Attribute keys of Warren's own, for what the conventions do not name.
const (
	confirmOutcomeKey  = attribute.Key("warren.confirm.outcome")
	connStateKey       = attribute.Key("warren.connection.state")
	recoveryOutcomeKey = attribute.Key("warren.recovery.outcome")
	redeliveredKey     = attribute.Key("warren.message.redelivered")
)

// Observer is a warren.Observer that records spans and metrics with
// OpenTelemetry. Make it with New and give it to one Connection
// (warren.Config.Observer): it keeps that connection's state (server
// address, open or recovering, blocked since when). It is safe for
// concurrent use.
type Observer struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	linkOnly bool

	sent        metric.Int64Counter
	consumed    metric.Int64Counter
	confirmed   metric.Int64Counter
	confirmTime metric.Float64Histogram
	returned    metric.Int64Counter
	settled     metric.Int64Counter
	connections metric.Int64UpDownCounter
	recoveries  metric.Int64Counter
	blockedTime metric.Float64Counter

	mu           sync.Mutex
	server       []attribute.KeyValue // server.address and server.port of the current connection
	state        string               // "open", "recovering" or "" (none)
	blockedSince time.Time            // zero unless blocked
}

var _ warren.Observer = (*Observer)(nil)

// New makes an Observer with opts. It fails only when an instrument
// cannot be created.
func New(opts Options) (*Observer, error) {
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	o := &Observer{
		tracer:   tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:     opts.Propagator,
		linkOnly: opts.LinkOnly,
	}
	if o.prop == nil {
		o.prop = otel.GetTextMapPropagator()
	}
	m := mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	o.sent = counter("messaging.client.sent.messages", "{message}", "Number of messages producer attempted to send to the broker.")
	o.consumed = counter("messaging.client.consumed.messages", "{message}", "Number of messages that were delivered to the application.")
	o.confirmed = counter("warren.client.confirmed.messages", "{message}", "Publisher confirms received, by outcome.")
	o.returned = counter("warren.client.returned.messages", "{message}", "Messages the broker returned (basic.return).")
	o.settled = counter("warren.client.settled.messages", "{message}", "Deliveries the application acked, nacked or rejected.")
	o.recoveries = counter("warren.client.recoveries", "{recovery}", "Connection recoveries that ended, by outcome.")
	var err error
	o.confirmTime, err = m.Float64Histogram("warren.client.confirm.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a publish to its confirm."))
	errs = append(errs, err)
	o.connections, err = m.Int64UpDownCounter("warren.client.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections, by state (open or recovering)."))
	errs = append(errs, err)
	o.blockedTime, err = m.Float64Counter("warren.client.blocked.duration", metric.WithUnit("s"),
		metric.WithDescription("Time the broker kept the connection blocked."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// ContextFor returns ctx with the creation context of d's message (the
// producer's span context, extracted from its headers with the Observer's
// propagator), for the application to start its own spans under when it
// processes d.
func (o *Observer) ContextFor(ctx context.Context, d *warren.Delivery) context.Context {
	return o.prop.Extract(ctx, headerCarrier{t: &d.Properties.Headers})
}

// serverAttrs returns server.address and server.port of the connection.
func (o *Observer) serverAttrs() []attribute.KeyValue {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.server
}

var (
	systemAttr  = semconv.MessagingSystemRabbitMQ
	systemMetOp = metric.WithAttributes(systemAttr)
)

// Publish starts the producer span and injects its context into the
// message's headers.
func (o *Observer) Publish(ctx context.Context, p *warren.PublishInfo) warren.PublishObserver {
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		systemAttr,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(p.Exchange),
		semconv.MessagingMessageBodySize(p.BodySize),
	)
	if p.RoutingKey != "" {
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(p.RoutingKey))
	}
	if p.Properties.MessageID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(p.Properties.MessageID))
	}
	if p.Properties.CorrelationID != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(p.Properties.CorrelationID))
	}
	attrs = append(attrs, o.serverAttrs()...)
	name := "publish"
	if p.Exchange != "" {
		name += " " + p.Exchange
	}
	ctx, span := o.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	// A copy: the caller's table is left alone.
	h := make(proto.Table, len(p.Properties.Headers), len(p.Properties.Headers)+2)
	copy(h, p.Properties.Headers)
	o.prop.Inject(ctx, headerCarrier{t: &h})
	p.Properties.Headers = h
	return &publishing{o: o, span: span, start: time.Now(), dest: semconv.MessagingDestinationName(p.Exchange)}
}

// publishing follows one publish's span.
type publishing struct {
	o     *Observer
	span  trace.Span
	start time.Time
	dest  attribute.KeyValue
}

// Published counts the publish and ends its span unless a confirm
// follows.
func (p *publishing) Published(r warren.PublishResult) {
	if r.Err != nil {
		et := errorType(r.Err)
		p.o.sent.Add(context.Background(), 1, metric.WithAttributes(systemAttr, semconv.MessagingOperationName("publish"), p.dest, et))
		p.span.RecordError(r.Err)
		p.span.SetStatus(codes.Error, r.Err.Error())
		p.span.SetAttributes(et)
		p.span.End()
		return
	}
	p.o.sent.Add(context.Background(), 1, metric.WithAttributes(systemAttr, semconv.MessagingOperationName("publish"), p.dest))
	if !r.Confirm {
		p.span.End()
	}
}

// Confirmed records the confirm and ends the span.
func (p *publishing) Confirmed(ack bool, err error) {
	outcome := "ack"
	switch {
	case err != nil:
		outcome = "lost"
		p.span.RecordError(err)
		p.span.SetStatus(codes.Error, err.Error())
		p.span.SetAttributes(errorType(err))
	case !ack:
		outcome = "nack"
		p.span.SetStatus(codes.Error, "nacked by the broker")
	}
	attrs := metric.WithAttributes(systemAttr, p.dest, confirmOutcomeKey.String(outcome))
	p.o.confirmed.Add(context.Background(), 1, attrs)
	p.o.confirmTime.Record(context.Background(), time.Since(p.start).Seconds(), attrs)
	p.span.End()
}

// Returned counts a basic.return and records it on its publish's span.
func (o *Observer) Returned(r *warren.Return, pub warren.PublishObserver) {
	o.returned.Add(context.Background(), 1, metric.WithAttributes(systemAttr, semconv.MessagingDestinationName(r.Exchange)))
	if p, ok := pub.(*publishing); ok {
		p.span.AddEvent("returned", trace.WithAttributes(
			attribute.Int("warren.return.reply_code", int(r.ReplyCode)),
			attribute.String("warren.return.reply_text", r.ReplyText),
		))
	}
}

// Delivery starts the process span, under (or linked to) the creation
// context in the message's headers.
func (o *Observer) Delivery(d *warren.Delivery, info warren.DeliveryInfo) warren.DeliveryObserver {
	creation := trace.SpanContextFromContext(o.ContextFor(context.Background(), d))
	parent := context.Background()
	opts := make([]trace.SpanStartOption, 0, 4)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer))
	if creation.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: creation}))
		if o.linkOnly {
			opts = append(opts, trace.WithNewRoot())
		} else {
			parent = trace.ContextWithRemoteSpanContext(parent, creation)
		}
	}
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs,
		systemAttr,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(d.Exchange),
		semconv.MessagingDestinationSubscriptionName(info.Queue),
		semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)),
		semconv.MessagingMessageBodySize(len(d.Body)),
		redeliveredKey.Bool(d.Redelivered),
	)
	if d.RoutingKey != "" {
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey))
	}
	if d.Properties.MessageID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(d.Properties.MessageID))
	}
	if d.Properties.CorrelationID != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(d.Properties.CorrelationID))
	}
	attrs = append(attrs, o.serverAttrs()...)
	opts = append(opts, trace.WithAttributes(attrs...))
	dest := info.Queue
	if dest == "" || strings.HasPrefix(dest, "amq.gen-") {
		dest = d.Exchange
	}
	name := "process"
	if dest != "" {
		name += " " + dest
	}
	_, span := o.tracer.Start(parent, name, opts...)
	o.consumed.Add(context.Background(), 1, metric.WithAttributes(systemAttr, semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(d.Exchange)))
	return processing{span}
}

// processing ends a process span when the hand-off is over.
type processing struct{ span trace.Span }

// HandedOff ends the span.
func (p processing) HandedOff() { p.span.End() }

// Settled counts the application's ack, nack or reject.
func (o *Observer) Settled(s warren.SettleInfo) {
	attrs := []attribute.KeyValue{systemAttr, semconv.MessagingOperationName(s.Kind.String())}
	if s.Err != nil {
		attrs = append(attrs, errorType(s.Err))
	}
	o.settled.Add(context.Background(), 1, metric.WithAttributes(attrs...))
}

// Connection keeps the server's address and counts open connections.
func (o *Observer) Connection(e warren.ConnectionEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch e.Kind {
	case warren.ConnectionOpened:
		o.server = addressAttrs(e.Address)
		if o.state != "recovering" { // a recovery's connection is open once it is restored
			o.setStateLocked("open")
		}
	case warren.ConnectionClosed:
		o.endBlockedLocked(time.Now())
		o.setStateLocked("")
	}
}

// Recovery counts recoveries and connections recovering.
func (o *Observer) Recovery(e warren.RecoveryEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch e.Kind {
	case warren.RecoveryLost:
		o.setStateLocked("recovering")
	case warren.RecoveryRecovered:
		o.recoveries.Add(context.Background(), 1, metric.WithAttributes(systemAttr, recoveryOutcomeKey.String("recovered")))
		o.setStateLocked("open")
	case warren.RecoveryGaveUp:
		o.recoveries.Add(context.Background(), 1, metric.WithAttributes(systemAttr, recoveryOutcomeKey.String("gave_up")))
		o.setStateLocked("")
	}
}

// setStateLocked moves the connection's count from its state to state.
func (o *Observer) setStateLocked(state string) {
	if o.state == state {
		return
	}
	if o.state != "" {
		o.connections.Add(context.Background(), -1, metric.WithAttributes(systemAttr, connStateKey.String(o.state)))
	}
	if state != "" {
		o.connections.Add(context.Background(), 1, metric.WithAttributes(systemAttr, connStateKey.String(state)))
	}
	o.state = state
}

// Blocked adds the time the connection was blocked when it unblocks.
func (o *Observer) Blocked(b warren.Blocking) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if b.Active {
		if o.blockedSince.IsZero() {
			o.blockedSince = now
		}
		return
	}
	o.endBlockedLocked(now)
}

// endBlockedLocked adds the blocked time up to now, if blocked.
func (o *Observer) endBlockedLocked(now time.Time) {
	if o.blockedSince.IsZero() {
		return
	}
	o.blockedTime.Add(context.Background(), now.Sub(o.blockedSince).Seconds(), systemMetOp)
	o.blockedSince = time.Time{}
}

// addressAttrs returns server.address and server.port for a host:port.
func addressAttrs(addr string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(addr)}
	}
	attrs := []attribute.KeyValue{semconv.ServerAddress(host)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	return attrs
}

// errorType is error.type for err: "not_sent" or "maybe_sent" for a
// publish whose channel closed first, the AMQP reply code for a channel or
// connection error (its name, e.g. NOT_FOUND), a name for Warren's
// other sentinels, else "_OTHER".
func errorType(err error) attribute.KeyValue {
	var ce *warren.ConnectionError
	var che *warren.ChannelError
	switch {
	case errors.Is(err, warren.ErrNotSent):
		return semconv.ErrorTypeKey.String("not_sent")
	case errors.Is(err, warren.ErrMaybeSent):
		return semconv.ErrorTypeKey.String("maybe_sent")
	case errors.As(err, &che):
		return semconv.ErrorTypeKey.String(che.Code.String())
	case errors.As(err, &ce):
		return semconv.ErrorTypeKey.String(ce.Code.String())
	case errors.Is(err, warren.ErrStaleDelivery):
		return semconv.ErrorTypeKey.String("stale_delivery")
	case errors.Is(err, warren.ErrClosed):
		return semconv.ErrorTypeKey.String("closed")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return semconv.ErrorTypeKey.String("context")
	}
	return semconv.ErrorTypeOther
}

// headerCarrier is a propagation.TextMapCarrier over a message's headers
// table: string values only; Set replaces a field of the same name or
// appends one.
type headerCarrier struct{ t *proto.Table }

// Get returns the string value of the field key, or "".
func (c headerCarrier) Get(key string) string {
	for _, f := range *c.t {
		if f.Name == key {
			s, _ := f.Value.AsString()
			return s
		}
	}
	return ""
}

// Set sets the field key to the string value.
func (c headerCarrier) Set(key, value string) {
	for i := range *c.t {
		if (*c.t)[i].Name == key {
			(*c.t)[i].Value = proto.String(value)
			return
		}
	}
	*c.t = append(*c.t, proto.Field{Name: key, Value: proto.String(value)})
}

// Keys lists the fields' names.
func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.t))
	for i, f := range *c.t {
		keys[i] = f.Name
	}
	return keys
}
