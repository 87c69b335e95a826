// Package tutorial is the plumbing that the RabbitMQ tutorial programs
// under examples/ share, so that each program's main.go shows its own
// tutorial and little else: running a program with Ctrl-C as a clean stop
// (Main), connecting and closing within bounds (Dial, Close), treating an
// error that ctx's end caused as a clean stop (IgnoreEnd, WithDuration),
// taking deliveries from a consumer (Next, Print, ConsumerErr), and the log
// exchange of tutorials three to five (LogExchange).
package tutorial

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/warren-amqp/warren"
)

// DialTimeout bounds Dial's handshake, CloseTimeout Close's.
const (
	DialTimeout  = 15 * time.Second
	CloseTimeout = 5 * time.Second
)

// Main runs a program's run function with the command line and standard
// output, under a context that Ctrl-C (SIGINT) or SIGTERM ends. It returns
// normally when run returns nil or flag.ErrHelp (-h); otherwise it prints
// the error on standard error, after the program's name, and exits with
// status 1.
func Main(name string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Dial connects to the broker at url, bounding the handshake by ctx and
// DialTimeout.
func Dial(ctx context.Context, url string) (*warren.Connection, error) {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn, err := warren.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	return conn, nil
}

// Close closes conn cleanly within CloseTimeout, also after ctx has ended
// (Ctrl-C).
func Close(ctx context.Context, conn *warren.Connection) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CloseTimeout)
	defer cancel()
	if err := conn.Close(ctx); err != nil {
		return fmt.Errorf("closing the connection: %w", err)
	}
	return nil
}

// IgnoreEnd returns nil once ctx has ended, err otherwise: an error that
// comes after ctx's end (an interrupted receiver, worker or server) is
// taken to be caused by it, and the program to have stopped cleanly.
func IgnoreEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WithDuration returns ctx, ended after d as well when d is positive (a
// receiver's --duration), and the function that releases it.
func WithDuration(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// ConsumerErr is why cons ended: its error, or "cancelled" when it has
// none (the broker cancelled it).
func ConsumerErr(cons *warren.Consumer) error {
	if err := cons.Err(); err != nil {
		return err
	}
	return errors.New("cancelled")
}

// Next waits for cons's next delivery. When there is none to come, ok is
// false and err says why: nil when ctx has ended (a clean stop), or the
// reason the consumer ended.
func Next(ctx context.Context, cons *warren.Consumer) (d warren.Delivery, ok bool, err error) {
	select {
	case <-ctx.Done():
		return warren.Delivery{}, false, nil
	case d, ok := <-cons.Deliveries():
		if !ok {
			return warren.Delivery{}, false, fmt.Errorf("the consumer ended: %w", ConsumerErr(cons))
		}
		return d, true, nil
	}
}

// Print writes line(d) and a newline to stdout for each delivery d on cons
// until count deliveries have come (0: no limit) or ctx ends, returning nil
// for either, or until the consumer ends, returning why.
func Print(ctx context.Context, cons *warren.Consumer, count int, stdout io.Writer, line func(warren.Delivery) string) error {
	for n := 0; count == 0 || n < count; n++ {
		d, ok, err := Next(ctx, cons)
		if !ok {
			return err
		}
		fmt.Fprintln(stdout, line(d))
	}
	return nil
}
