package warren_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// brokerURL is the broker the examples use: $AMQP_URL or the local one.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Connecting, and closing cleanly.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alive:", conn.IsAlive())
	if err := conn.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("alive after close:", conn.IsAlive())
}

// Declaring an exchange and a queue and binding them.
func ExampleChannel_QueueDeclare() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := ch.ExchangeDeclare(ctx, "warren.example.orders", "topic", warren.ExchangeOptions{AutoDelete: true}); err != nil {
		log.Fatal(err)
	}
	q, err := ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true, Arguments: proto.Table{
		{Name: "x-max-length", Value: proto.Int32(1000)},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if err := ch.QueueBind(ctx, q.Name, "order.*", "warren.example.orders", warren.BindOptions{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("server-named queue:", len(q.Name) > 0)
}

// Publishing with publisher confirms, and waiting for the broker's ack.
func ExampleChannel_PublishWithConfirm() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
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
	if err := ch.ConfirmSelect(ctx); err != nil {
		log.Fatal(err)
	}
	confirmation, err := ch.PublishWithConfirm(ctx, "", q.Name, warren.Publishing{
		Properties: proto.Properties{ContentType: "text/plain", DeliveryMode: proto.Persistent},
		Body:       []byte("hello"),
	})
	if err != nil {
		log.Fatal(err) // nothing was sent
	}
	acked, err := confirmation.Wait(ctx)
	if err != nil {
		log.Fatal(err) // the outcome is unknown: the message may have been sent
	}
	fmt.Println("acked:", acked)
}

// Consuming with manual acknowledgements.
func ExampleChannel_Consume() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
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
	for i := 1; i <= 3; i++ {
		if err := ch.Publish(ctx, "", q.Name, warren.Publishing{Body: []byte(fmt.Sprintf("job %d", i))}); err != nil {
			log.Fatal(err)
		}
	}
	consumer, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{Prefetch: 10})
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d := <-consumer.Deliveries()
		fmt.Println(string(d.Body))
		if err := d.Ack(false); err != nil {
			log.Fatal(err)
		}
	}
	if err := consumer.Cancel(ctx); err != nil {
		log.Fatal(err)
	}
}

// Handling a mandatory message that no queue takes.
func ExampleChannel_NotifyReturn() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan warren.Return, 1))
	if err := ch.ConfirmSelect(ctx); err != nil {
		log.Fatal(err)
	}
	confirmation, err := ch.PublishWithConfirm(ctx, "", "warren.example.nobody-listens", warren.Publishing{
		Mandatory: true,
		Body:      []byte("lost?"),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := confirmation.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	r := <-returns
	fmt.Println(uint16(r.ReplyCode), r.ReplyText, string(r.Body))
	fmt.Println("handle says returned:", confirmation.Returned() != nil)
}

// Reading a RabbitMQ stream over AMQP 0-9-1: declare it with
// x-queue-type "stream" (durable, not exclusive), then consume with a
// prefetch and manual acks, choosing where to start with the
// x-stream-offset argument ("first", "last", "next", an offset, a
// timestamp or an interval such as "1h"). Each delivery carries its
// offset in the x-stream-offset header.
func Example_stream() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	stream := fmt.Sprintf("warren.example.stream.%d", time.Now().UnixNano())
	if _, err := ch.QueueDeclare(ctx, stream, warren.QueueOptions{Durable: true, Arguments: proto.Table{
		{Name: "x-queue-type", Value: proto.String("stream")},
	}}); err != nil {
		log.Fatal(err)
	}
	defer ch.QueueDelete(ctx, stream, warren.QueueDeleteOptions{})
	if err := ch.ConfirmSelect(ctx); err != nil {
		log.Fatal(err)
	}
	for _, body := range []string{"created", "paid", "shipped"} {
		cf, err := ch.PublishWithConfirm(ctx, "", stream, warren.Publishing{Body: []byte(body)})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := cf.Wait(ctx); err != nil {
			log.Fatal(err)
		}
	}

	// From offset 1 on.
	cons, err := ch.Consume(ctx, stream, warren.ConsumeOptions{Prefetch: 100, Arguments: proto.Table{
		{Name: "x-stream-offset", Value: proto.Int64(1)},
	}})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		d := <-cons.Deliveries()
		offset, _ := d.Properties.Headers.Get("x-stream-offset")
		n, _ := offset.AsInt()
		fmt.Printf("offset %d: %s\n", n, d.Body)
		if err := d.Ack(false); err != nil {
			log.Fatal(err)
		}
	}
	if err := cons.Cancel(ctx); err != nil {
		log.Fatal(err)
	}
}

// Ranging over a consumer's messages: the loop's context ends the
// consumer.
func ExampleConsumer_Messages() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
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
	for _, job := range []string{"resize", "upload", "notify"} {
		if err := ch.Publish(ctx, "", q.Name, warren.Publishing{Body: []byte(job)}); err != nil {
			log.Fatal(err)
		}
	}
	consumer, err := ch.Consume(ctx, q.Name, warren.ConsumeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	loop, stop := context.WithCancel(ctx)
	defer stop()
	done := 0
	for d, err := range consumer.Messages(loop) {
		if errors.Is(err, context.Canceled) {
			break // stop() below: the consumer is cancelled
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(d.Body))
		if err := d.Ack(false); err != nil {
			log.Fatal(err)
		}
		if done++; done == 3 {
			stop()
		}
	}
	fmt.Println("consumer ended cleanly:", consumer.Err() == nil)
}

// Request/reply over direct reply-to: a server answers the requests of
// one queue, a client calls it.
func ExampleRPCClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
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
	serving, stopServing := context.WithCancel(ctx)
	defer stopServing()
	go warren.ServeRPC(serving, ch, q.Name, func(ctx context.Context, req warren.Delivery) (warren.Publishing, error) {
		return warren.Publishing{Body: []byte("hello, " + string(req.Body))}, nil
	}, warren.RPCServerOptions{})

	client, err := warren.NewRPCClient(ctx, conn)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close(ctx)
	reply, err := client.Call(ctx, "", q.Name, warren.Publishing{Body: []byte("world")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Body))
	_, err = client.Call(ctx, "", "no such queue", warren.Publishing{})
	fmt.Println("returned:", errors.Is(err, warren.ErrRequestReturned), errors.Is(err, warren.NoRoute))
}

// Telling errors apart with errors.Is and errors.As: reply codes are
// errors.Is targets, *ChannelError and *ConnectionError carry the
// details, and IsRecoverable says whether a retry may succeed.
func ExampleChannelError() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	_, err = ch.QueueDeclare(ctx, "warren.example.no-such-queue", warren.QueueOptions{Passive: true})
	fmt.Println("not found:", errors.Is(err, warren.NotFound))
	var chErr *warren.ChannelError
	if errors.As(err, &chErr) {
		fmt.Println("code:", int(chErr.Code), "recoverable:", warren.IsRecoverable(err))
	}
	// The channel reopens on its own for the next call.
	_, err = ch.QueueDeclare(ctx, "", warren.QueueOptions{Exclusive: true})
	fmt.Println("next call:", err)
}

// A refused login is a *ConnectionError the broker sent (errors.As), its
// reply code an errors.Is target; no retry cures it.
func ExampleConnectionError() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := warren.DialWith(ctx, "amqp://guest:wrong-password@127.0.0.1:5672/",
		warren.DialOptions{Config: warren.Config{Recovery: warren.Recovery{Disabled: true}}})
	var connErr *warren.ConnectionError
	if errors.As(err, &connErr) {
		fmt.Println("code:", int(connErr.Code), "by:", connErr.Origin)
	}
	fmt.Println("access refused:", errors.Is(err, warren.AccessRefused), "recoverable:", warren.IsRecoverable(err))
}

// The outcome of a confirmed publish: acked, nacked, or one of the
// client's sentinels when the channel or connection closed first:
// ErrNotSent when the broker certainly refused it (a missing exchange),
// ErrMaybeSent when nobody can know.
func ExampleConfirmation_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := warren.Dial(ctx, brokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	ch, err := conn.Channel(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := ch.ConfirmSelect(ctx); err != nil {
		log.Fatal(err)
	}
	cf, err := ch.PublishWithConfirm(ctx, "warren.example.no-such-exchange", "", warren.Publishing{Body: []byte("x")})
	if err != nil {
		log.Fatal(err)
	}
	acked, err := cf.Wait(ctx)
	switch {
	case errors.Is(err, warren.ErrNotSent):
		fmt.Println("not sent:", errors.Is(err, warren.NotFound))
	case errors.Is(err, warren.ErrMaybeSent):
		fmt.Println("maybe sent: publish again if duplicates are acceptable")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("acked:", acked)
	}
}
