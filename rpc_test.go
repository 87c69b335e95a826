package warren

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startRPCServer serves queue (declared here, deleted when the test ends)
// with handler on a connection of its own, until the test ends.
func startRPCServer(t *testing.T, ctx context.Context, queue string, handler RPCHandler) {
	t.Helper()
	sc := dialURL(t, brokerURL(), Config{})
	sch := newChannel(t, ctx, sc)
	declareQueue(t, ctx, sch, queue, QueueOptions{})
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- ServeRPC(sctx, sch, queue, handler, RPCServerOptions{Prefetch: 8}) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-served:
			require.ErrorIs(t, err, context.Canceled, "ServeRPC ends with its context")
		case <-time.After(15 * time.Second):
			t.Error("ServeRPC did not return")
		}
	})
}

func upper(ctx context.Context, req Delivery) (Publishing, error) {
	return Publishing{Body: bytes.ToUpper(req.Body)}, nil
}

// Many concurrent calls over one client, each answered with its own
// reply; a request no queue takes fails at once as returned; a call
// nobody answers ends by its context.
func TestBrokerRPC(t *testing.T) {
	ctx := brokerCtx(t)
	queue := testQueueName(t)
	startRPCServer(t, ctx, queue, upper)

	conn := dialURL(t, brokerURL(), Config{})
	client, err := NewRPCClient(ctx, conn)
	require.NoError(t, err)
	defer func() { require.NoError(t, client.Close(ctx)) }()

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			body := fmt.Sprintf("request %d", i)
			reply, err := client.Call(ctx, "", queue, Publishing{Body: []byte(body)})
			if err == nil && string(reply.Body) != fmt.Sprintf("REQUEST %d", i) {
				err = fmt.Errorf("call %d got %q", i, reply.Body)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	_, err = client.Call(ctx, "", queue+".nobody", Publishing{Body: []byte("x")})
	require.ErrorIs(t, err, ErrRequestReturned)
	require.ErrorIs(t, err, NoRoute)

	silent := queue + ".silent"
	ch := newChannel(t, ctx, conn)
	declareQueue(t, ctx, ch, silent, QueueOptions{})
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = client.Call(short, "", silent, Publishing{Body: []byte("x")})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// A call pending when the client's connection is lost fails with a
// recoverable error; the next call, once the connection has recovered,
// gets its reply.
func TestBrokerRPCAcrossRecovery(t *testing.T) {
	ctx := brokerCtx(t)
	queue := testQueueName(t)
	release := make(chan struct{})
	var first sync.Once
	startRPCServer(t, ctx, queue, func(ctx context.Context, req Delivery) (Publishing, error) {
		if string(req.Body) == "hold" {
			first.Do(func() { <-release }) // answered only after the loss
		}
		return upper(ctx, req)
	})

	name := fmt.Sprintf("warren-test-rpc-%d", time.Now().UnixNano())
	conn := dialURL(t, brokerURL(), Config{ConnectionName: name})
	events := watchRecovery(conn)
	client, err := NewRPCClient(ctx, conn)
	require.NoError(t, err)
	defer func() { require.NoError(t, client.Close(ctx)) }()
	reply, err := client.Call(ctx, "", queue, Publishing{Body: []byte("before")})
	require.NoError(t, err)
	require.Equal(t, "BEFORE", string(reply.Body))

	pending := make(chan error, 1)
	go func() {
		_, err := client.Call(ctx, "", queue, Publishing{Body: []byte("hold")})
		pending <- err
	}()
	time.Sleep(200 * time.Millisecond) // the request is with the server
	rabbitmqctl(t, "close_connection", connectionPid(t, name), "rpc test")
	err = <-pending
	close(release)
	require.ErrorIs(t, err, ErrReplyLost)
	require.True(t, IsRecoverable(err), "%v", err)

	events.waitFor(t, RecoveryRecovered, 20*time.Second)
	reply, err = client.Call(ctx, "", queue, Publishing{Body: []byte("after")})
	require.NoError(t, err)
	require.Equal(t, "AFTER", string(reply.Body))
}

// The iterator yields deliveries in order; breaking out leaves the
// consumer running; its context's end cancels the consumer and is
// yielded once; a consumer the broker cancels yields its error.
func TestBrokerConsumerMessages(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialURL(t, brokerURL(), Config{})
	ch := newChannel(t, ctx, c)
	queue := testQueueName(t)
	declareQueue(t, ctx, ch, queue, QueueOptions{})
	publishN(t, ctx, confirmChannel(t, ctx, c), queue, 6)
	cons, err := ch.Consume(ctx, queue, ConsumeOptions{})
	require.NoError(t, err)

	var got []string
	for d, err := range cons.Messages(ctx) {
		require.NoError(t, err)
		got = append(got, string(d.Body))
		require.NoError(t, d.Ack(false))
		if len(got) == 3 {
			break
		}
	}
	require.Equal(t, []string{"m0", "m1", "m2"}, got)

	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var ended error
	for d, err := range cons.Messages(loopCtx) {
		if err != nil {
			ended = err
			break
		}
		got = append(got, string(d.Body))
		require.NoError(t, d.Ack(false))
		if len(got) == 6 {
			stop()
		}
	}
	require.Equal(t, []string{"m0", "m1", "m2", "m3", "m4", "m5"}, got, "the consumer ran on after the break")
	require.ErrorIs(t, ended, context.Canceled)
	requireEnded(t, cons)
	require.NoError(t, cons.Err(), "cancelled, not failed")

	// The broker cancels a consumer whose queue is deleted.
	cons, err = ch.Consume(ctx, queue, ConsumeOptions{})
	require.NoError(t, err)
	other := newChannel(t, ctx, c)
	_, err = other.QueueDelete(ctx, queue, QueueDeleteOptions{})
	require.NoError(t, err)
	var failed error
	for _, err := range cons.Messages(ctx) {
		failed = err
	}
	var che *ChannelError
	require.True(t, errors.As(failed, &che), "%v", failed)
	require.Equal(t, cons.Tag, che.ConsumerTag)
}
