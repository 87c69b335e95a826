// Command readme is the program the README's "Using the client" section
// shows, as it shows it: publish two messages with confirms, consume
// them, and close.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, "amqp://guest:guest@localhost:5672/"); err != nil { // amqps:// for TLS
		log.Fatal(err)
	}
}

func run(ctx context.Context, url string) error {
	conn, err := warren.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx) // a no-op after the Close below; closes on the error paths
	ch, err := conn.Channel(ctx)
	if err != nil {
		return err
	}
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	if err != nil {
		return err
	}

	// Publisher confirms: every publish gets a handle that resolves exactly once.
	if err := ch.ConfirmSelect(ctx); err != nil {
		return err
	}
	for _, body := range []string{"hello", "world"} {
		cf, err := ch.PublishWithConfirm(ctx, "", q.Name, warren.Publishing{
			Properties: proto.Properties{ContentType: "text/plain"},
			Body:       []byte(body),
		})
		if err != nil {
			return err
		}
		acked, err := cf.Wait(ctx) // err wraps warren.ErrMaybeSent if the connection died first
		if err != nil {
			return err
		}
		if !acked {
			return fmt.Errorf("publish %q: nacked by the broker", body)
		}
	}

	// Consuming: a bounded buffer; manual-ack consumers get a prefetch no larger than it.
	cons, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{})
	if err != nil {
		return err
	}
	received := 0
	for d, err := range cons.Messages(ctx) { // ctx's end would cancel the consumer
		if err != nil {
			return err
		}
		fmt.Println(string(d.Body))
		if err := d.Ack(false); err != nil {
			return err
		}
		if received++; received == 2 {
			break // the consumer runs on until cancelled
		}
	}
	if err := cons.Cancel(ctx); err != nil {
		return err
	}
	return conn.Close(ctx)
}
