package main

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// The two clients behind one small interface. The wrappers are thin (a
// method call and an interface conversion that does not allocate) and the
// same for both, so they do not tilt the comparison; the consume loops are
// written out per client so that each receives its own Delivery type.

const (
	clientWarren  = "warren"
	clientAMQP091 = "amqp091"
	contentType   = "application/octet-stream"
	consumerTag   = "compare-consumer"
	prefetch      = 256 // manual-ack consumers: basic.qos prefetch-count (Warren's default buffer)
)

type client interface {
	Name() string
	Dial(ctx context.Context, url string) (session, error)
}

// session is one connection with one channel.
type session interface {
	Confirm(ctx context.Context) error
	Publish(ctx context.Context, queue string, body []byte) error
	PublishConfirm(ctx context.Context, queue string, body []byte) (confirmation, error)
	// Sync makes a round trip on the channel (passive queue.declare): every
	// earlier publish has reached the broker when it returns.
	Sync(ctx context.Context, queue string) error
	// ConsumeN consumes n messages from queue, acking each one unless
	// noAck; start and stop bracket the measured part.
	ConsumeN(ctx context.Context, queue string, n int, noAck bool, start, stop func()) error
	Close(ctx context.Context) error
}

type confirmation interface {
	Wait(ctx context.Context) (acked bool, err error)
}

func clientByName(name string, warrenHandler bool) (client, error) {
	switch name {
	case clientWarren:
		return warrenClient{handler: warrenHandler}, nil
	case clientAMQP091:
		return amqpClient{}, nil
	}
	return nil, fmt.Errorf("unknown client %q (want %s or %s)", name, clientWarren, clientAMQP091)
}

// ---- Warren ----

// warrenClient runs Warren; with handler, its consumers take deliveries
// through ConsumeOptions.Handler (on the reader goroutine) rather than the
// Deliveries channel.
type warrenClient struct{ handler bool }

func (warrenClient) Name() string { return clientWarren }

func (wc warrenClient) Dial(ctx context.Context, url string) (session, error) {
	conn, err := warren.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel(ctx)
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return &warrenSession{conn: conn, ch: ch, handler: wc.handler}, nil
}

type warrenSession struct {
	conn    *warren.Connection
	ch      *warren.Channel
	handler bool
}

var warrenProps = proto.Properties{ContentType: contentType, DeliveryMode: proto.Transient}

func (s *warrenSession) Confirm(ctx context.Context) error { return s.ch.ConfirmSelect(ctx) }

func (s *warrenSession) Publish(ctx context.Context, queue string, body []byte) error {
	return s.ch.Publish(ctx, "", queue, warren.Publishing{Properties: warrenProps, Body: body})
}

func (s *warrenSession) PublishConfirm(ctx context.Context, queue string, body []byte) (confirmation, error) {
	cf, err := s.ch.PublishWithConfirm(ctx, "", queue, warren.Publishing{Properties: warrenProps, Body: body})
	if err != nil {
		return nil, err
	}
	return cf, nil
}

func (s *warrenSession) Sync(ctx context.Context, queue string) error {
	_, err := s.ch.QueueDeclare(ctx, queue, warren.QueueOptions{Passive: true})
	return err
}

func (s *warrenSession) ConsumeN(ctx context.Context, queue string, n int, noAck bool, start, stop func()) error {
	if s.handler {
		return s.consumeHandler(ctx, queue, n, noAck, start, stop)
	}
	start()
	cons, err := s.ch.Consume(ctx, queue, warren.ConsumeOptions{ConsumerTag: consumerTag, NoAck: noAck, Prefetch: prefetch})
	if err != nil {
		stop()
		return err
	}
	deliveries := cons.Deliveries()
	for i := 0; i < n; i++ {
		select {
		case d, ok := <-deliveries:
			if !ok {
				stop()
				return fmt.Errorf("deliveries closed after %d of %d: %v", i, n, cons.Err())
			}
			if !noAck {
				if err := d.Ack(false); err != nil {
					stop()
					return err
				}
			}
		case <-ctx.Done():
			stop()
			return fmt.Errorf("after %d of %d deliveries: %w", i, n, ctx.Err())
		}
	}
	stop()
	return cons.Cancel(ctx)
}

func (s *warrenSession) Close(ctx context.Context) error { return s.conn.Close(ctx) }

// ---- amqp091-go ----

type amqpClient struct{}

func (amqpClient) Name() string { return clientAMQP091 }

func (amqpClient) Dial(ctx context.Context, url string) (session, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &amqpSession{conn: conn, ch: ch}, nil
}

type amqpSession struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (s *amqpSession) Confirm(context.Context) error { return s.ch.Confirm(false) }

func amqpPublishing(body []byte) amqp.Publishing {
	return amqp.Publishing{ContentType: contentType, DeliveryMode: amqp.Transient, Body: body}
}

func (s *amqpSession) Publish(ctx context.Context, queue string, body []byte) error {
	return s.ch.PublishWithContext(ctx, "", queue, false, false, amqpPublishing(body))
}

type amqpConfirmation struct{ *amqp.DeferredConfirmation }

func (c amqpConfirmation) Wait(ctx context.Context) (bool, error) { return c.WaitContext(ctx) }

func (s *amqpSession) PublishConfirm(ctx context.Context, queue string, body []byte) (confirmation, error) {
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqpPublishing(body))
	if err != nil {
		return nil, err
	}
	if dc == nil {
		return nil, errors.New("amqp091: no deferred confirmation (channel not in confirm mode)")
	}
	return amqpConfirmation{dc}, nil
}

func (s *amqpSession) Sync(_ context.Context, queue string) error {
	_, err := s.ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	return err
}

func (s *amqpSession) ConsumeN(ctx context.Context, queue string, n int, noAck bool, start, stop func()) error {
	start()
	if !noAck {
		if err := s.ch.Qos(prefetch, 0, false); err != nil {
			stop()
			return err
		}
	}
	deliveries, err := s.ch.ConsumeWithContext(ctx, queue, consumerTag, noAck, false, false, false, nil)
	if err != nil {
		stop()
		return err
	}
	for i := 0; i < n; i++ {
		select {
		case d, ok := <-deliveries:
			if !ok {
				stop()
				return fmt.Errorf("deliveries closed after %d of %d", i, n)
			}
			if !noAck {
				if err := d.Ack(false); err != nil {
					stop()
					return err
				}
			}
		case <-ctx.Done():
			stop()
			return fmt.Errorf("after %d of %d deliveries: %w", i, n, ctx.Err())
		}
	}
	stop()
	return s.ch.Cancel(consumerTag, false)
}

func (s *amqpSession) Close(context.Context) error { return s.conn.Close() }

// consumeHandler is ConsumeN with a Handler consumer.
func (s *warrenSession) consumeHandler(ctx context.Context, queue string, n int, noAck bool, start, stop func()) error {
	start()
	done := make(chan error, 1)
	count := 0
	cons, err := s.ch.Consume(ctx, queue, warren.ConsumeOptions{ConsumerTag: consumerTag, NoAck: noAck, Prefetch: prefetch,
		Handler: func(d warren.Delivery) {
			if count >= n {
				return
			}
			count++
			if !noAck {
				if err := d.Ack(false); err != nil {
					count = n
					done <- err
					return
				}
			}
			if count == n {
				done <- nil
			}
		}})
	if err != nil {
		stop()
		return err
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("handler consumer: %w", ctx.Err())
	}
	stop()
	if err != nil {
		return err
	}
	return cons.Cancel(ctx)
}
