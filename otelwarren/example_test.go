package otelwarren_test

import (
	"context"
	"log"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/otelwarren"
)

// Installing the observer: one per connection, here with the global
// tracer and meter providers (set up by the application's OpenTelemetry
// SDK) and the W3C trace-context propagator. Publishes made with a context
// that holds a span become its children, and their consumers' process
// spans join the same trace.
func Example() {
	ctx := context.Background()
	obs, err := otelwarren.New(otelwarren.Options{Propagator: propagation.TraceContext{}})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := warren.DialWith(ctx, "amqp://guest:guest@localhost:5672/",
		warren.DialOptions{Config: warren.Config{Observer: obs}})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	if err != nil {
		log.Fatal(err)
	}

	// The publish span is a child of the span in ctx; its context goes
	// into the message's headers.
	ctx, span := otel.Tracer("example").Start(ctx, "handle order")
	err = ch.Publish(ctx, "", q.Name, warren.Publishing{Body: []byte("order 42")})
	span.End()
	if err != nil {
		log.Fatal(err)
	}

	cons, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	d := <-cons.Deliveries() // its "process" span has ended with the hand-off
	// The application's own spans go under the message's creation context.
	work, span := otel.Tracer("example").Start(obs.ContextFor(ctx, &d), "ship order")
	_ = work
	span.End()
	if err := d.Ack(false); err != nil {
		log.Fatal(err)
	}
}
