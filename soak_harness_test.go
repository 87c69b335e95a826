//go:build brokerglobal || cluster

package warren

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// soak is a run of confirmed, persistent publishes and manually acked
// consumption on one queue while faults happen, and the proof afterwards
// that nothing confirmed was lost.
type soak struct {
	uris      []string    // what producer and consumer dial (DialAny)
	queue     string      // declared by the caller
	messages  int         // distinct messages to get confirmed
	window    int         // confirms outstanding at most
	faults    []soakFault // run in order, spread evenly over the run
	prodName  string      // connection names, for rabbitmqctl close_connection
	consName  string
	recovery  Recovery
	bodyBytes int
}

// durableQueue declares a durable queue through uri (a connection that
// does not recover, closed at once) and deletes it when the test ends.
func durableQueue(t *testing.T, ctx context.Context, uri, name string, args proto.Table) {
	t.Helper()
	c := dialURL(t, uri, Config{Recovery: Recovery{Disabled: true}})
	ch := newChannel(t, ctx, c)
	_, err := ch.QueueDeclare(ctx, name, QueueOptions{Durable: true, Arguments: args})
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))
	deleteQueueAfter(t, name) // through the default node, up for the whole test
}

// soakFault is one fault, given the run's names.
type soakFault struct {
	name string
	do   func(s *soak) error
}

// ctl runs rabbitmqctl for a fault (on the soak's goroutines: it returns
// the error rather than fail the test).
func ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// killConnections closes the producer's and the consumer's connections
// from the broker's side, as an operator would.
func killConnections(s *soak) error {
	for _, name := range []string{s.prodName, s.consName} {
		expr := fmt.Sprintf(`length([rabbit_networking:close_connection(P, "soak kill") || P <- rabbit_networking:connections(), `+
			`{client_properties, CP} <- rabbit_networking:connection_info(P, [client_properties]), `+
			`lists:keyfind(<<"connection_name">>, 1, CP) =:= {<<"connection_name">>, longstr, <<"%s">>}]).`, name)
		// The connection may still be recovering from the last fault
		// (the soak waits only for the producer's recovery): retry.
		for try := 0; ; try++ {
			out, err := ctl("eval", expr)
			if err != nil {
				return err
			}
			if out == "1" {
				break
			}
			if try == 60 {
				return fmt.Errorf("closed %s connections named %s, want 1", out, name)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// restartBroker stops and starts the default node's application.
func restartBroker(*soak) error {
	if _, err := ctl("stop_app"); err != nil {
		return err
	}
	time.Sleep(time.Second)
	_, err := ctl("start_app")
	return err
}

// soakResult is what a soak saw.
type soakResult struct {
	messages, published, maybeSent, deliveries, duplicates, unexplained int
	recoveries                                                          []time.Duration // loss to the first confirmed publish after it
	faults                                                              []string
	elapsed                                                             time.Duration
	consRecoveries                                                      int       // the consumer's recoveries
	startAddrs, endAddrs                                                [2]string // producer's and consumer's brokers
}

func (r soakResult) String() string {
	d := slices.Clone(r.recoveries)
	slices.Sort(d)
	var p50, mx time.Duration
	if len(d) > 0 {
		p50, mx = d[len(d)/2], d[len(d)-1]
	}
	return fmt.Sprintf("%d messages confirmed (%d publishes, %d maybe-sent and re-published), %d deliveries, %d duplicates (%d unexplained), "+
		"faults %v, %d recoveries: loss to next confirmed publish p50 %s, max %s; %s in all",
		r.messages, r.published, r.maybeSent, r.deliveries, r.duplicates, r.unexplained, r.faults, len(r.recoveries),
		p50.Round(time.Millisecond), mx.Round(time.Millisecond), r.elapsed.Round(time.Second))
}

// run runs the soak and checks that every confirmed message was consumed
// at least once and every duplicate is explained.
func (s *soak) run(t *testing.T, ctx context.Context) soakResult {
	t.Helper()
	if s.window == 0 {
		s.window = 256
	}
	start := time.Now()
	dial := func(name string) *Connection {
		c, err := DialAny(ctx, s.uris, DialOptions{Config: Config{ConnectionName: name, Recovery: s.recovery}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	prod, cons := dial(s.prodName), dial(s.consName)

	// Loss times: a recovery lasts from the producer's loss to its first
	// confirmed publish afterwards.
	var lostAt atomic.Int64
	var recovered atomic.Int64 // the producer's recoveries finished
	var res soakResult
	var resMu sync.Mutex
	res.startAddrs = [2]string{prod.Address(), cons.Address()}
	prodEvents := prod.NotifyRecovery(make(chan RecoveryEvent, 16))
	consEvents := cons.NotifyRecovery(make(chan RecoveryEvent, 16))
	var watchers sync.WaitGroup
	watchers.Add(2)
	go func() {
		defer watchers.Done()
		for e := range prodEvents {
			switch e.Kind {
			case RecoveryLost:
				lostAt.CompareAndSwap(0, time.Now().UnixNano())
			case RecoveryRecovered:
				recovered.Add(1)
			}
		}
	}()
	go func() {
		defer watchers.Done()
		for e := range consEvents {
			if e.Kind == RecoveryRecovered {
				resMu.Lock()
				res.consRecoveries++
				resMu.Unlock()
			}
		}
	}()

	// The consumer: counts every id, notes which came redelivered.
	cch, err := cons.Channel(ctx)
	require.NoError(t, err)
	consumer, err := cch.Consume(ctx, s.queue, ConsumeOptions{Prefetch: 512})
	require.NoError(t, err)
	seen := make([]uint16, s.messages)
	redelivered := make([]bool, s.messages)
	distinct := 0
	var seenMu sync.Mutex
	allSeen := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		for d := range consumer.Deliveries() {
			id := binary.BigEndian.Uint64(d.Body)
			seenMu.Lock()
			if seen[id] == 0 {
				distinct++
			}
			seen[id]++
			if d.Redelivered {
				redelivered[id] = true
			}
			res.deliveries++
			if distinct == s.messages {
				select {
				case <-allSeen:
				default:
					close(allSeen)
				}
			}
			seenMu.Unlock()
			if err := d.Ack(false); err != nil && !errorsIsStale(err) {
				consumed <- err
				return
			}
		}
		consumed <- fmt.Errorf("consumer ended: %w", consumer.Err())
	}()

	// The producer: publishes ids, re-publishes those whose outcome is
	// unknown, until every id is confirmed.
	pch, err := prod.Channel(ctx)
	require.NoError(t, err)
	require.NoError(t, pch.ConfirmSelect(ctx))
	type inflight struct {
		id uint64
		cf *Confirmation
	}
	pending := make(chan inflight, s.window)
	redo := make(chan uint64, s.messages)
	maybe := make([]bool, s.messages)
	confirmed := 0
	segment := s.messages / (len(s.faults) + 1)
	faultAt := make([]int, len(s.faults))
	for i := range s.faults {
		faultAt[i] = (i + 1) * segment
	}
	collectorDone := make(chan error, 1)
	progress := make(chan int, 1)
	go func() {
		for p := range pending {
			acked, err := p.cf.Wait(ctx)
			switch {
			case err == nil && acked:
				confirmed++
				if at := lostAt.Swap(0); at != 0 {
					resMu.Lock()
					res.recoveries = append(res.recoveries, time.Since(time.Unix(0, at)))
					resMu.Unlock()
				}
				select {
				case progress <- confirmed:
				default:
				}
				if confirmed == s.messages {
					collectorDone <- nil
					return
				}
			case err == nil || errorsIsMaybeSent(err):
				maybe[p.id] = true
				res.maybeSent++
				redo <- p.id
			default:
				collectorDone <- err
				return
			}
		}
	}()
	body := make([]byte, max(8, s.bodyBytes))
	msg := Publishing{Properties: proto.Properties{DeliveryMode: proto.Persistent}}
	next := uint64(0)
	fault := 0
	var faultsDone sync.WaitGroup
	var faultDone chan struct{} // the running fault's, until the producer recovered from it
	faultErrs := make(chan error, len(s.faults))
publishing:
	for {
		var id uint64
		select {
		case id = <-redo:
		default:
			if next < uint64(s.messages) {
				id = next
				next++
			} else {
				select {
				case id = <-redo:
				case err := <-collectorDone:
					require.NoError(t, err)
					break publishing
				case <-ctx.Done():
					t.Fatalf("soak timed out: %d of %d confirmed", confirmed, s.messages)
				}
			}
		}
		select {
		case n := <-progress:
			if fault < len(s.faults) && n >= faultAt[fault] && faultDone == nil {
				f := s.faults[fault]
				res.faults = append(res.faults, f.name)
				fault++
				done := make(chan struct{})
				faultDone = done
				faultsDone.Add(1)
				go func() {
					defer faultsDone.Done()
					defer close(done)
					if err := f.do(s); err != nil {
						faultErrs <- fmt.Errorf("%s: %w", f.name, err)
					}
				}()
			}
		default:
		}
		// While a fault runs, publish slowly, so that it strikes with
		// publishes in flight, and stop half-way to the next fault until
		// it has struck and the producer has recovered: every fault lands
		// mid-run and is recovered from before the next.
		if faultDone != nil {
			struck := false
			select {
			case <-faultDone:
				struck = true
			default:
				if id == next-1 && int(id) >= faultAt[fault-1]+segment/2 {
					select {
					case <-faultDone:
						struck = true
					case <-ctx.Done():
						t.Fatalf("fault %s did not finish", res.faults[len(res.faults)-1])
					}
				} else {
					time.Sleep(time.Millisecond)
				}
			}
			if struck {
				for want := int64(len(res.faults)); recovered.Load() < want; time.Sleep(10 * time.Millisecond) {
					if ctx.Err() != nil {
						t.Fatalf("the producer did not recover from fault %s", res.faults[len(res.faults)-1])
					}
				}
				faultDone = nil
			}
		}
		binary.BigEndian.PutUint64(body, id)
		msg.Body = body
		cf, err := pch.PublishWithConfirm(ctx, "", s.queue, msg)
		require.NoError(t, err, "publish waits through recoveries")
		res.published++
		pending <- inflight{id, cf}
	}
	close(pending)
	faultsDone.Wait()
	close(faultErrs)
	for err := range faultErrs {
		require.NoError(t, err)
	}
	require.Equal(t, len(s.faults), fault, "every fault ran")

	select {
	case <-allSeen:
	case err := <-consumed:
		t.Fatalf("consumer: %v", err)
	case <-ctx.Done():
		seenMu.Lock()
		t.Fatalf("soak timed out: %d of %d confirmed messages consumed", distinct, s.messages)
	}
	require.NoError(t, consumer.Cancel(ctx))
	seenMu.Lock()
	for id, n := range seen {
		require.NotZero(t, n, "confirmed message %d never consumed", id)
		if n > 1 {
			res.duplicates += int(n) - 1
			if !redelivered[id] && !maybe[id] {
				res.unexplained++
			}
		}
	}
	seenMu.Unlock()
	require.Zero(t, res.unexplained, "every duplicate is flagged Redelivered or was re-published after ErrMaybeSent")
	res.messages = s.messages
	res.elapsed = time.Since(start)
	res.endAddrs = [2]string{prod.Address(), cons.Address()}
	_ = prod.Close(ctx)
	_ = cons.Close(ctx)
	watchers.Wait()
	resMu.Lock()
	defer resMu.Unlock()
	return res
}

func errorsIsStale(err error) bool     { return errors.Is(err, ErrStaleDelivery) }
func errorsIsMaybeSent(err error) bool { return errors.Is(err, ErrMaybeSent) }
