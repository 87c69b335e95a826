// Command publisher-confirms is RabbitMQ tutorial seven ("Publisher
// Confirms") with Warren: it publishes the same number of messages three
// ways on a channel in confirm mode, and says how long each took:
//
//   - individually: publish one message, wait for its confirm, publish the
//     next;
//
//   - in batches: publish a batch (--batch-size), then wait for all its
//     confirms;
//
//   - asynchronously: keep publishing, and settle the outstanding messages
//     as the broker's acks and nacks (Channel.NotifyConfirm) come in, one at
//     a time or many at once (multiple), then wait for the last of them.
//
//     go run ./examples/publisher-confirms
//     go run ./examples/publisher-confirms --strategy async --count 100000
//
// Each strategy publishes to a fresh queue (server-named, or --queue) and
// deletes it afterwards, reporting how many messages it held: as many as
// were acked. A message the broker nacks is reported, and makes the program
// fail; --max-length gives the queue a length limit beyond which the broker
// nacks, to see that happen.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/examples/internal/tutorial"
	"github.com/warren-amqp/warren/proto"
)

func main() { tutorial.Main("publisher-confirms", run) }

// config holds the command line.
type config struct {
	url       string
	queue     string
	strategy  string
	count     int
	batchSize int
	maxLength int
	timeout   time.Duration
}

// strategy is one way of publishing with confirms: it publishes c.count
// messages to queue on ch (in confirm mode) and counts the outcomes.
type strategy struct {
	name    string // as in --strategy
	how     string // for the report
	publish func(ctx context.Context, c config, ch *warren.Channel, queue string, stdout io.Writer) (tally, error)
}

var strategies = []strategy{
	{"individual", "individually", publishIndividually},
	{"batch", "in batches", publishInBatches},
	{"async", "asynchronously", publishAsync},
}

// tally counts the broker's answers.
type tally struct{ acked, nacked int }

// run parses args and runs the chosen strategies, one after the other,
// printing a report line for each. It fails when a message is nacked or a
// confirm does not come within --timeout of the start.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("publisher-confirms", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.queue, "queue", "", "the queue to publish to, declared and deleted by each strategy (default: a server-named one)")
	fs.StringVar(&c.strategy, "strategy", "all", "individual, batch, async or all")
	fs.IntVar(&c.count, "count", 50_000, "messages each strategy publishes")
	fs.IntVar(&c.batchSize, "batch-size", 100, "batch: messages per batch")
	fs.IntVar(&c.maxLength, "max-length", 0, "declare the queue with this x-max-length and x-overflow reject-publish, so that the broker nacks the messages that do not fit (0: no limit)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.count < 1 || c.batchSize < 1 || c.maxLength < 0 {
		return errors.New("--count and --batch-size must be at least 1, --max-length not negative")
	}
	var chosen []strategy
	for _, s := range strategies {
		if c.strategy == "all" || c.strategy == s.name {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		return fmt.Errorf("--strategy must be individual, batch, async or all, not %q", c.strategy)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return runAll(ctx, c, chosen, stdout)
}

// runAll runs the chosen strategies on one connection.
func runAll(ctx context.Context, c config, chosen []strategy, stdout io.Writer) (err error) {
	conn, err := tutorial.Dial(ctx, c.url)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tutorial.Close(ctx, conn)) }()
	for _, s := range chosen {
		if err := runStrategy(ctx, c, conn, s, stdout); err != nil {
			return fmt.Errorf("publishing %s: %w", s.how, err)
		}
	}
	return nil
}

// runStrategy runs s on a channel of its own in confirm mode, with a fresh
// queue that it deletes afterwards.
func runStrategy(ctx context.Context, c config, conn *warren.Connection, s strategy, stdout io.Writer) (err error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer func() {
		if cerr := ch.Close(ctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the channel: %w", cerr))
		}
	}()
	opts := warren.QueueOptions{Exclusive: c.queue == ""}
	if c.maxLength > 0 {
		// A full queue refuses what comes next: the broker nacks it.
		opts.Arguments = proto.Table{
			{Name: "x-max-length", Value: proto.Int64(int64(c.maxLength))},
			{Name: "x-overflow", Value: proto.String("reject-publish")},
		}
	}
	q, err := ch.QueueDeclare(ctx, c.queue, opts)
	if err != nil {
		return fmt.Errorf("declaring the queue: %w", err)
	}
	if err := ch.ConfirmSelect(ctx); err != nil {
		return fmt.Errorf("entering confirm mode: %w", err)
	}

	start := time.Now()
	t, err := s.publish(ctx, c, ch, q.Name, stdout)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Published %d messages %s in %d ms: %d acked, %d nacked\n",
		c.count, s.how, elapsed.Milliseconds(), t.acked, t.nacked)

	held, err := ch.QueueDelete(ctx, q.Name, warren.QueueDeleteOptions{})
	if err != nil {
		return fmt.Errorf("deleting the queue: %w", err)
	}
	fmt.Fprintf(stdout, "  the queue held %d messages\n", held)
	if t.nacked > 0 {
		return fmt.Errorf("the broker nacked %d messages", t.nacked)
	}
	return nil
}

// message is the i-th message, its number as text, as in the tutorial.
func message(i int) warren.Publishing {
	return warren.Publishing{
		Properties: proto.Properties{ContentType: "text/plain"},
		Body:       []byte(strconv.Itoa(i)),
	}
}

// publishIndividually waits for each message's confirm before publishing
// the next: simple, and as slow as a round trip per message.
func publishIndividually(ctx context.Context, c config, ch *warren.Channel, queue string, _ io.Writer) (tally, error) {
	var t tally
	for i := range c.count {
		cf, err := ch.PublishWithConfirm(ctx, "", queue, message(i))
		if err != nil {
			return t, err
		}
		if err := count(ctx, cf, &t); err != nil {
			return t, err
		}
	}
	return t, nil
}

// publishInBatches publishes c.batchSize messages, then waits for all their
// confirms: a round trip per batch, at the price of not knowing which
// message of a failed batch failed until the batch is over.
func publishInBatches(ctx context.Context, c config, ch *warren.Channel, queue string, _ io.Writer) (tally, error) {
	var t tally
	batch := make([]*warren.Confirmation, 0, c.batchSize)
	settle := func() error {
		for _, cf := range batch {
			if err := count(ctx, cf, &t); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	for i := range c.count {
		cf, err := ch.PublishWithConfirm(ctx, "", queue, message(i))
		if err != nil {
			return t, err
		}
		batch = append(batch, cf)
		if len(batch) == c.batchSize {
			if err := settle(); err != nil {
				return t, err
			}
		}
	}
	return t, settle()
}

// count waits for cf's outcome and counts it.
func count(ctx context.Context, cf *warren.Confirmation, t *tally) error {
	acked, err := cf.Wait(ctx)
	if err != nil {
		return fmt.Errorf("waiting for confirm %d: %w", cf.Seq, err)
	}
	if acked {
		t.acked++
	} else {
		t.nacked++
	}
	return nil
}

// publishAsync publishes without waiting, keeping each unconfirmed message
// by its sequence number, and settles them as the broker's confirm notices
// arrive (a notice with Multiple settles every message up to its tag). The
// notices are read in the goroutine that publishes, between publishes, so
// that a message is always recorded before its notice is handled. At the end
// it waits for the notices still to come.
func publishAsync(ctx context.Context, c config, ch *warren.Channel, queue string, stdout io.Writer) (tally, error) {
	notices := ch.NotifyConfirm(make(chan warren.ConfirmNotice, 1024))
	o := outstanding{bodies: make(map[uint64][]byte), stdout: stdout}
	for i := range c.count {
	drain:
		for {
			select {
			case n, ok := <-notices:
				if !ok {
					return o.tally, fmt.Errorf("the channel closed: %w", ch.Err())
				}
				o.settle(n)
			default:
				break drain
			}
		}
		msg := message(i)
		cf, err := ch.PublishWithConfirm(ctx, "", queue, msg)
		if err != nil {
			return o.tally, err
		}
		o.add(cf.Seq, msg.Body)
	}
	for len(o.bodies) > 0 {
		select {
		case <-ctx.Done():
			return o.tally, fmt.Errorf("%d messages still unconfirmed: %w", len(o.bodies), ctx.Err())
		case n, ok := <-notices:
			if !ok {
				return o.tally, fmt.Errorf("the channel closed: %w", ch.Err())
			}
			o.settle(n)
		}
	}
	return o.tally, nil
}

// outstanding are the messages published but not yet confirmed, by
// sequence number. Sequence numbers on a channel increase by one per
// publish, so the lowest unconfirmed one, low, is all that a multiple
// notice needs to start from.
type outstanding struct {
	bodies map[uint64][]byte
	low    uint64 // the lowest sequence number that may be unconfirmed
	next   uint64 // the sequence number after the last one added
	tally
	stdout io.Writer
}

// add records a message just published.
func (o *outstanding) add(seq uint64, body []byte) {
	if o.next == 0 {
		o.low = seq
	}
	o.bodies[seq] = body
	o.next = seq + 1
}

// settle applies one confirm notice.
func (o *outstanding) settle(n warren.ConfirmNotice) {
	first := n.DeliveryTag
	if n.Multiple {
		first = o.low
	}
	for seq := first; seq <= n.DeliveryTag; seq++ {
		body, ok := o.bodies[seq]
		if !ok {
			continue
		}
		delete(o.bodies, seq)
		if n.Ack {
			o.acked++
		} else {
			// A real application would publish it again, or log it.
			o.nacked++
			fmt.Fprintf(o.stdout, "  message %q (sequence number %d) was nacked\n", body, seq)
		}
	}
	for o.low < o.next {
		if _, ok := o.bodies[o.low]; ok {
			break
		}
		o.low++
	}
}
