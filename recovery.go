package warren

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Recovery configures automatic recovery: when a connection made by
// Dial, DialWith, DialAny or Connect is lost, Warren dials again (walking
// its addresses, with backoff), restores the channels and what was
// declared through the connection, and carries on under the same
// *Connection, *Channel and *Consumer values. The zero value is recovery
// on, with the defaults below.
//
// What is restored, in order: the connection (same configuration, fresh
// handshake); every Channel the application has not closed, with its
// confirm mode, QoS (per-consumer and global) and tx mode, including one
// whose last incarnation ended in a channel error (it would have reopened
// on its next call anyway); exchanges; queues (a server-named queue gets
// a new name, which bindings and consumers follow and the Recovered event
// reports); queue and exchange-to-exchange bindings; consumers, with
// their tags and arguments, on their own channels.
//
// Not restored: what the application deleted, consumers it or the broker
// cancelled, auto-delete queues (exchanges) whose last consumer (binding)
// the application itself cancelled (removed), passive declarations, and
// what Filter leaves out. An entity that cannot be restored is reported
// in the Recovered event and the rest goes on; a consumer not restored
// ends as if cancelled, its Err wrapping ErrNotRestored.
//
// Work in flight at the loss: a confirm-mode publish not yet confirmed
// resolves with an error wrapping ErrMaybeSent (never re-sent, never
// reported confirmed); a request waiting for its reply (Get included)
// fails with the connection's error, for which IsRecoverable is true; a
// transaction in progress is lost (TxCommit returns ErrTxRolledBack) and
// the channel is in tx mode again; a delivery received before the loss
// can no longer be acknowledged (ErrStaleDelivery): the broker delivers
// it again, flagged Redelivered. Calls made while the connection
// recovers wait for it, bounded by their contexts, and go out once
// everything is restored (or fail at once with ErrRecovering under
// FailFast).
type Recovery struct {
	// Disabled turns recovery off: a loss ends the connection.
	Disabled bool
	// Backoff paces the attempts.
	Backoff Backoff
	// MaxAttempts bounds the dial attempts of one recovery; 0 means no
	// bound (Close stops a recovery at any time).
	MaxAttempts int
	// AttemptTimeout bounds one attempt (dial and handshake) when its
	// address has no connection timeout of its own (a URI's
	// connection_timeout). Default 30 s.
	AttemptTimeout time.Duration
	// Recoverable decides which losses start a recovery. Default:
	// network errors and a missed heartbeat, a broker close with a
	// recoverable code (320 CONNECTION_FORCED, 506 RESOURCE_ERROR), a
	// connection Warren closed because the broker broke the protocol
	// (Origin ByLocal), and a 530 answering our own update-secret
	// (ErrSecretRefused); see IsRecoverable. The application's own Close never recovers.
	Recoverable func(error) bool
	// FailFast makes calls made during a recovery fail at once with
	// ErrRecovering instead of waiting for it.
	FailFast bool
	// Filter leaves entities out of the restoring.
	Filter TopologyFilter
	// LockedRetry is how long an exclusive queue that answers 405
	// RESOURCE_LOCKED, or an exclusive consumer that answers 403
	// ACCESS_REFUSED, is retried (with Backoff) before it is reported not
	// restored: after a network path went dark, the holder is our own
	// dead connection until the broker notices it. Zero: two and a half
	// heartbeat intervals of the lost connection, at least 10 s and at
	// most 3 minutes. Calls wait for the recovery meanwhile.
	LockedRetry time.Duration
}

// Backoff is how long a recovery waits before each pass over its
// addresses: Initial before the first, then Multiplier times longer for
// each further pass, up to Max, each delay drawn uniformly between zero
// and that (full jitter) unless NoJitter. Within a pass, the next address
// is dialled at once.
type Backoff struct {
	Initial    time.Duration // default 100 ms
	Max        time.Duration // default 10 s
	Multiplier float64       // default 2
	NoJitter   bool          // wait the computed delays exactly
}

// TopologyFilter says which recorded entities a recovery restores: a nil
// function keeps every entity of its kind; one that returns false leaves
// the entity out (a consumer left out ends, its Err wrapping
// ErrNotRestored).
type TopologyFilter struct {
	Exchange func(DeclaredExchange) bool
	Queue    func(DeclaredQueue) bool
	Binding  func(DeclaredBinding) bool
	Consumer func(DeclaredConsumer) bool
}

// ErrNotRestored is wrapped by the Err of a consumer that a recovery did
// not restore, with the reason.
var ErrNotRestored = errors.New("amqp: not restored after a connection loss")

// RecoveryEventKind says what a RecoveryEvent reports.
type RecoveryEventKind uint8

// The kinds of RecoveryEvent, in the order a recovery reports them.
const (
	// RecoveryLost: the connection was lost (Err says how) and a recovery
	// starts.
	RecoveryLost RecoveryEventKind = iota + 1
	// RecoveryRetrying: an attempt is about to dial Address after Delay
	// (Err: the previous attempt's error, or the loss).
	RecoveryRetrying
	// RecoveryRecovered: connected to Address and restored, Downtime
	// after the loss; Renamed and NotRestored tell what changed.
	RecoveryRecovered
	// RecoveryGaveUp: the attempts ran out or Close stopped the recovery;
	// the connection has ended (Err: why, wrapping ErrGaveUp, or ErrClosed
	// when Close stopped it).
	RecoveryGaveUp
)

// String returns "lost", "retrying", "recovered" or "gave up".
func (k RecoveryEventKind) String() string {
	switch k {
	case RecoveryLost:
		return "lost"
	case RecoveryRetrying:
		return "retrying"
	case RecoveryRecovered:
		return "recovered"
	case RecoveryGaveUp:
		return "gave up"
	}
	return fmt.Sprintf("RecoveryEventKind(%d)", uint8(k))
}

// RecoveryEvent is one step of a recovery (see Connection.NotifyRecovery).
type RecoveryEvent struct {
	Kind RecoveryEventKind
	// Err: Lost, the loss; Retrying, the previous attempt's error (the
	// loss before the first); GaveUp, why the connection ended.
	Err error
	// Attempt counts the dial attempts of this recovery: Retrying, the
	// one about to start (from 1); Recovered and GaveUp, those made.
	Attempt int
	// Delay is the wait before this attempt (Retrying).
	Delay time.Duration
	// Address is the broker address dialled (Retrying) or connected to
	// (Recovered), credentials redacted.
	Address string
	// Downtime runs from the loss to the end of the recovery (Recovered,
	// GaveUp).
	Downtime time.Duration
	// Renamed lists the server-named queues that got new names
	// (Recovered).
	Renamed []QueueRename
	// NotRestored lists what could not be restored, and why
	// (Recovered).
	NotRestored []RestoreFailure
}

// QueueRename is a server-named queue declared again under a new name.
type QueueRename struct{ Old, New string }

// RestoreFailure is an entity a recovery could not restore.
type RestoreFailure struct {
	// What names the entity, e.g. `queue "q"` or `consumer "tag" on
	// queue "q"`.
	What string
	Err  error
}

// withDefaults fills in the defaults.
func (r Recovery) withDefaults() Recovery {
	if r.Backoff.Initial <= 0 {
		r.Backoff.Initial = 100 * time.Millisecond
	}
	if r.Backoff.Max <= 0 {
		r.Backoff.Max = 10 * time.Second
	}
	if r.Backoff.Max < r.Backoff.Initial {
		r.Backoff.Max = r.Backoff.Initial
	}
	if r.Backoff.Multiplier < 1 {
		r.Backoff.Multiplier = 2
	}
	if r.AttemptTimeout <= 0 {
		r.AttemptTimeout = 30 * time.Second
	}
	if r.Recoverable == nil {
		r.Recoverable = IsRecoverable
	}
	return r
}

// retryPolicy decides, purely, when and where each attempt of a recovery
// dials.
type retryPolicy struct {
	b Backoff
	n int // addresses
}

// plan returns the address (an index into the recovery's order) that
// attempt (from 0) dials and how long to wait before it; r, in [0, 1),
// draws the jitter. Attempts walk the addresses in order; each pass over
// them starts with a backoff delay that grows per pass.
func (p retryPolicy) plan(attempt int, r float64) (addr int, delay time.Duration) {
	n := max(p.n, 1)
	addr = attempt % n
	if addr != 0 {
		return addr, 0
	}
	pass := attempt / n
	d := float64(p.b.Initial) * math.Pow(p.b.Multiplier, float64(pass))
	if d > float64(p.b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(p.b.Max)
	}
	if !p.b.NoJitter {
		d *= r
	}
	return addr, time.Duration(d)
}

// addressOrder is the order a recovery walks n addresses: as given, or
// shuffled with perm.
func addressOrder(n int, shuffle bool, perm func(int) []int) []int {
	if shuffle {
		return perm(n)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	return order
}

// lockedRetryWindow is how long a recovery retries an entity our own dead
// connection may still hold (see Recovery.LockedRetry), given the lost
// connection's heartbeat interval.
func lockedRetryWindow(configured, heartbeat time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	w := heartbeat * 5 / 2
	return min(max(w, 10*time.Second), 3*time.Minute)
}

// recoversLocked reports whether losing the connection with err starts a
// recovery.
func (c *Connection) recoversLocked(err error) bool {
	if c.cfg.Recovery.Disabled || len(c.endpoints) == 0 || c.userClosed || err == nil {
		return false
	}
	return c.cfg.Recovery.Recoverable(c.lossErr(err))
}

// lossErr is err as a recovery sees it: a 530 that answers our own
// update-secret wraps ErrSecretRefused.
func (c *Connection) lossErr(err error) error {
	if c.secretPending > 0 && errors.Is(err, proto.NotAllowed) {
		return fmt.Errorf("%w: %w", ErrSecretRefused, err)
	}
	return err
}

// startRecoveryLocked starts recovering from the loss of old's
// connection.
func (c *Connection) startRecoveryLocked(old *driver.Driver, cause error) {
	c.state = ConnRecovering
	c.gate = make(chan struct{})
	c.lostAt = time.Now().UnixNano()
	c.secretPending = 0
	ctx, cancel := context.WithCancel(context.Background())
	c.recCancel = cancel
	if c.blocked {
		// A new connection starts unblocked; a connection.blocked follows
		// if the alarm persists.
		c.blocked = false
		for _, l := range c.lis.blockers() {
			l.post(Blocking{Reason: "connection lost", Changes: 1})
		}
		if obs := c.cfg.Observer; obs != nil {
			obs.Blocked(Blocking{Reason: "connection lost", Changes: 1})
		}
	}
	heartbeat := old.Core().Tuning().Heartbeat
	c.postRecoveryLocked(RecoveryEvent{Kind: RecoveryLost, Err: cause})
	done := make(chan struct{})
	c.recDone = done
	go c.recoverLoop(ctx, old, cause, heartbeat, done)
}

// NotifyRecovery registers ch to receive the recovery events, in order
// (lost, retrying, recovered or gave up); ch is closed when the
// connection ends for good. Events are never dropped and never stall the
// connection: while ch has no room they are held. It returns ch.
func (c *Connection) NotifyRecovery(ch chan RecoveryEvent) chan RecoveryEvent {
	l := newChanListener(ch, c.log, "recovery")
	c.lock()
	if c.ended {
		c.unlock(driver.FlushLater)
		l.close()
		return ch
	}
	ls := c.listenersLocked()
	ls.rec = append(ls.rec, l)
	c.unlock(driver.FlushLater)
	return ch
}

// postRecoveryLocked reports a recovery event to the listeners and the
// log.
func (c *Connection) postRecoveryLocked(e RecoveryEvent) {
	for _, l := range c.lis.recoverers() {
		l.post(e)
	}
	if obs := c.cfg.Observer; obs != nil {
		obs.Recovery(e)
	}
	switch e.Kind {
	case RecoveryLost:
		c.log.Warn("amqp connection lost: recovering", "error", e.Err)
	case RecoveryRetrying:
		c.log.Info("amqp recovery attempt", "attempt", e.Attempt, "delay", e.Delay, "address", e.Address, "last_error", e.Err)
	case RecoveryRecovered:
		c.log.Info("amqp connection recovered", "address", e.Address, "attempts", e.Attempt, "downtime", e.Downtime,
			"renamed_queues", len(e.Renamed), "not_restored", len(e.NotRestored))
		for _, f := range e.NotRestored {
			c.log.Warn("amqp recovery could not restore", "entity", f.What, "error", f.Err)
		}
	case RecoveryGaveUp:
		if errors.Is(e.Err, ErrClosed) {
			c.log.Info("amqp recovery stopped by Close", "attempts", e.Attempt)
			break
		}
		c.log.Error("amqp recovery gave up", "attempts", e.Attempt, "error", e.Err)
	}
}

// waitRecovery waits, within ctx, for a recovery under way to end.
func (c *Connection) waitRecovery(ctx context.Context) error {
	c.mu.Lock()
	done := c.recDone
	c.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recoverLoop is the recovery goroutine: it dials until a connection is
// restored, the attempts run out or Close cancels ctx.
func (c *Connection) recoverLoop(ctx context.Context, old *driver.Driver, cause error, heartbeat time.Duration, done chan struct{}) {
	defer close(done)
	old.Wait() // its reader is the last to touch the handler's state
	policy := retryPolicy{b: c.cfg.Recovery.Backoff, n: len(c.endpoints)}
	order := addressOrder(len(c.endpoints), c.shuffle, rand.Perm)
	window := lockedRetryWindow(c.cfg.Recovery.LockedRetry, heartbeat)
	lastErr := cause
	for attempt := 0; ; attempt++ {
		if c.cfg.Recovery.MaxAttempts > 0 && attempt >= c.cfg.Recovery.MaxAttempts {
			c.giveUp(fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, attempt, lastErr), attempt)
			return
		}
		i, delay := policy.plan(attempt, rand.Float64())
		ep := &c.endpoints[order[i]]
		c.mu.Lock()
		c.postRecoveryLocked(RecoveryEvent{Kind: RecoveryRetrying, Attempt: attempt + 1, Delay: delay, Address: ep.name(), Err: lastErr})
		c.mu.Unlock()
		if !sleep(ctx, delay) {
			c.giveUp(nil, attempt)
			return
		}
		d, err := c.dialEndpoint(ctx, ep)
		if err == nil {
			var rep restoreReport
			if rep, err = c.restore(ctx, window); err == nil && c.finishRecovery(d, ep, rep, attempt+1) {
				return
			}
			if err == nil {
				err = fmt.Errorf("amqp: connection lost while restoring: %w", ErrConnectionLost)
			}
			d.Abort()
		}
		if ctx.Err() != nil {
			c.giveUp(nil, attempt+1)
			return
		}
		lastErr = err
	}
}

// dialEndpoint dials ep and runs the handshake, bounded by ep's
// connection timeout (or Recovery.AttemptTimeout).
func (c *Connection) dialEndpoint(ctx context.Context, ep *endpoint) (*driver.Driver, error) {
	timeout := ep.timeout
	if timeout <= 0 {
		timeout = c.cfg.Recovery.AttemptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := ep.connector.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return c.handshake(ctx, nc, ep.config(c.cfg))
}

// finishRecovery opens the gate if d, the restored connection, is still
// open; it reports whether it did.
func (c *Connection) finishRecovery(d *driver.Driver, ep *endpoint, rep restoreReport, attempts int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d.Load() != d || d.Core().State() != statemachine.StateOpen {
		return false
	}
	c.state = ConnOpen
	c.cur = ep
	close(c.gate)
	c.gate = nil
	c.recDone = nil
	c.postRecoveryLocked(RecoveryEvent{Kind: RecoveryRecovered, Address: ep.name(), Attempt: attempts,
		Downtime: time.Since(time.Unix(0, c.lostAt)), Renamed: rep.renamed, NotRestored: rep.failed})
	return true
}

// giveUp ends a recovery that ran out of attempts (err) or that Close
// stopped (err nil): the connection ends for good. No driver runs.
func (c *Connection) giveUp(err error, attempts int) {
	c.mu.Lock()
	ended := err
	if ended == nil {
		ended = ErrClosed
	}
	c.postRecoveryLocked(RecoveryEvent{Kind: RecoveryGaveUp, Err: ended, Attempt: attempts, Downtime: time.Since(time.Unix(0, c.lostAt))})
	for ch := range c.between {
		for tag, cons := range ch.consumers {
			ch.dropConsumerLocked(tag)
			cons.endDetachedLocked(ended)
		}
		for _, cons := range c.ending[ch] {
			cons.endDetachedLocked(cons.err)
		}
		delete(c.ending, ch)
	}
	c.recDone = nil
	c.endLocked(err)
	c.mu.Unlock()
	c.closeDone()
}

// sleep waits d, or until ctx ends (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// restoreReport is what a restoring could not do as asked.
type restoreReport struct {
	renamed []QueueRename
	failed  []RestoreFailure
}

func (r *restoreReport) fail(what string, err error) {
	r.failed = append(r.failed, RestoreFailure{What: what, Err: err})
}

// restore brings the new connection to where the lost one was:
// channels with their modes, then exchanges, queues, bindings and
// consumers. A channel-level failure is reported and the rest goes on; a
// connection-level one (or ctx ending) stops it with the error.
func (c *Connection) restore(ctx context.Context, window time.Duration) (restoreReport, error) {
	var rep restoreReport
	deadline := time.Now().Add(window)
	chans := c.channelsToRestore()
	for _, ch := range chans {
		if err := ch.open(ctx, false); err != nil {
			if !c.channelLevel(ctx, err) {
				return rep, err
			}
			rep.fail(fmt.Sprintf("channel %d", ch.ID()), err)
		}
	}
	rc := &Channel{conn: c, restorer: true}
	if err := rc.open(ctx, false); err != nil {
		return rep, err
	}
	defer func() { _ = rc.Close(ctx) }()
	renames, err := c.restoreTopology(ctx, rc, deadline, &rep)
	if err != nil {
		return rep, err
	}
	for _, ch := range chans {
		if err := c.restoreConsumers(ctx, ch, renames, deadline, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// channelsToRestore lists the Channels to reopen, in the order they had
// been opened.
func (c *Connection) channelsToRestore() []*Channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	var chans []*Channel
	for ch := range c.between {
		if !ch.userClosed && !ch.restorer {
			chans = append(chans, ch)
		}
	}
	slices.SortFunc(chans, func(a, b *Channel) int { return int(a.id) - int(b.id) })
	return chans
}

// channelLevel reports whether a restoring step failed on its channel
// only: the connection is still open and ctx has not ended.
func (c *Connection) channelLevel(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	m := c.lock()
	open := m.State() == statemachine.StateOpen
	c.unlock(driver.FlushLater)
	var ce *proto.ChannelError
	return open && (errors.As(err, &ce) || errors.Is(err, statemachine.ErrChannelNotOpen))
}

// restoreTopology declares the recorded exchanges, queues and bindings
// again on rc, and returns the new names of server-named queues.
func (c *Connection) restoreTopology(ctx context.Context, rc *Channel, deadline time.Time, rep *restoreReport) (map[string]string, error) {
	f := c.cfg.Recovery.Filter
	topo := c.topo.snapshot()
	for _, e := range topo.Exchanges {
		if f.Exchange != nil && !f.Exchange(e) {
			continue
		}
		o := e.Options
		m := &frames.ExchangeDeclare{Exchange: e.Name, Type: e.Kind, Durable: o.Durable, AutoDelete: o.AutoDelete, Internal: o.Internal, Arguments: o.Arguments}
		if _, err := c.restoreStep(ctx, rc, fmt.Sprintf("exchange %q", e.Name), m, 0, deadline, rep); err != nil {
			return nil, err
		}
	}
	renames := make(map[string]string)
	for _, q := range topo.Queues {
		if f.Queue != nil && !f.Queue(q) {
			continue
		}
		o := q.Options
		name := q.Name
		if q.ServerNamed {
			name = ""
		}
		var locked proto.ReplyCode
		if o.Exclusive {
			locked = proto.ResourceLocked
		}
		m := &frames.QueueDeclare{Queue: name, Durable: o.Durable, Exclusive: o.Exclusive, AutoDelete: o.AutoDelete, Arguments: o.Arguments}
		reply, err := c.restoreStep(ctx, rc, fmt.Sprintf("queue %q", q.Name), m, locked, deadline, rep)
		if err != nil {
			return nil, err
		}
		if ok, _ := reply.(*frames.QueueDeclareOK); ok != nil && q.ServerNamed && ok.Queue != q.Name {
			renames[q.Name] = ok.Queue
			c.topo.rename(q.Name, ok.Queue)
			rep.renamed = append(rep.renamed, QueueRename{Old: q.Name, New: ok.Queue})
		}
	}
	for _, b := range topo.Bindings {
		if f.Binding != nil && !f.Binding(b) {
			continue
		}
		var m frames.Method
		if b.ExchangeToExchange {
			m = &frames.ExchangeBind{Destination: b.Destination, Source: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
		} else {
			dest := b.Destination
			if n, ok := renames[dest]; ok {
				dest = n
			}
			m = &frames.QueueBind{Queue: dest, Exchange: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
		}
		what := fmt.Sprintf("binding %q -> %q (%q)", b.Source, b.Destination, b.RoutingKey)
		if _, err := c.restoreStep(ctx, rc, what, m, 0, deadline, rep); err != nil {
			return nil, err
		}
	}
	return renames, nil
}

// restoreStep sends one declaration on rc. A channel error is reported
// in rep (and rc reopens on its next call), except that one with code
// locked is retried with backoff until deadline; a connection-level
// error is returned.
func (c *Connection) restoreStep(ctx context.Context, rc *Channel, what string, m frames.Method, locked proto.ReplyCode, deadline time.Time, rep *restoreReport) (frames.Method, error) {
	wait := c.cfg.Recovery.Backoff.Initial
	for {
		reply, _, err := rc.call(ctx, m)
		if err == nil {
			return reply, nil
		}
		if !c.channelLevel(ctx, err) {
			return nil, err
		}
		if locked != 0 && errors.Is(err, locked) && time.Until(deadline) > 0 {
			if !sleep(ctx, min(wait, time.Until(deadline))) {
				return nil, ctx.Err()
			}
			wait = min(wait*2, c.cfg.Recovery.Backoff.Max)
			continue
		}
		rep.fail(what, err)
		return nil, nil
	}
}

// restoreConsumers consumes again, on ch, the consumers it had. A
// consumer that fails closes the channel, and with it those restored
// before it: the channel reopens and they consume again. A failed
// consumer ends (behind its queued deliveries) when the channel opens
// next.
func (c *Connection) restoreConsumers(ctx context.Context, ch *Channel, renames map[string]string, deadline time.Time, rep *restoreReport) error {
	c.mu.Lock()
	if ch.userClosed {
		c.mu.Unlock()
		return nil
	}
	pending := make([]*consumer, 0, len(ch.consumers))
	for _, cons := range ch.consumers {
		pending = append(pending, cons)
	}
	slices.SortFunc(pending, func(a, b *consumer) int { return int(a.seq) - int(b.seq) })
	ch.consumers, ch.lastCons = nil, nil
	live := ch.liveLocked()
	f := c.cfg.Recovery.Filter.Consumer
	var keep []*consumer
	for _, cons := range pending {
		if n, ok := renames[cons.queue]; ok {
			cons.queue = n
		}
		dc := DeclaredConsumer{Queue: cons.queue, Tag: cons.tag, Options: cons.opts}
		switch {
		case !live:
			// The channel did not reopen (reported): these consumers were
			// never registered on this connection, so nothing is queued
			// for them.
			rep.fail(consumerWhat(cons), fmt.Errorf("its channel did not reopen: %w", ch.lastErr))
			cons.endDetachedLocked(fmt.Errorf("%w: its channel did not reopen: %w", ErrNotRestored, ch.lastErr))
			c.topo.deleteConsumer(cons.tag)
		case f != nil && !f(dc):
			cons.endDetachedLocked(fmt.Errorf("%w: left out by Recovery.Filter", ErrNotRestored))
			c.topo.deleteConsumer(cons.tag)
		default:
			keep = append(keep, cons)
		}
	}
	c.mu.Unlock()
	pending = keep
	restored := make(map[*consumer]bool, len(pending))
	failed := make(map[*consumer]bool)
	wait := c.cfg.Recovery.Backoff.Initial
	for {
		restart := false
		for _, cons := range pending {
			if restored[cons] || failed[cons] {
				continue
			}
			err := c.reconsume(ctx, ch, cons)
			if err == nil {
				restored[cons] = true
				continue
			}
			if !c.channelLevel(ctx, err) {
				return err
			}
			// The channel closed, taking the consumers restored so far.
			clear(restored)
			locked := errors.Is(err, proto.ResourceLocked) || (cons.opts.Exclusive && errors.Is(err, proto.AccessRefused))
			if locked && time.Until(deadline) > 0 {
				if !sleep(ctx, min(wait, time.Until(deadline))) {
					return ctx.Err()
				}
				wait = min(wait*2, c.cfg.Recovery.Backoff.Max)
			} else {
				failed[cons] = true
				rep.fail(consumerWhat(cons), err)
				c.mu.Lock()
				ch.dropConsumerLocked(cons.tag)
				cons.err = fmt.Errorf("%w: %w", ErrNotRestored, err)
				if c.ending == nil {
					c.ending = make(map[*Channel][]*consumer)
				}
				c.ending[ch] = append(c.ending[ch], cons)
				c.topo.deleteConsumer(cons.tag)
				c.mu.Unlock()
			}
			restart = true
			break
		}
		if !restart {
			return nil
		}
		if err := ch.open(ctx, false); err != nil {
			if !c.channelLevel(ctx, err) {
				return err
			}
			rep.fail(fmt.Sprintf("channel %d", ch.ID()), err)
			return nil
		}
	}
}

func consumerWhat(cons *consumer) string {
	return fmt.Sprintf("consumer %q on queue %q", cons.tag, cons.queue)
}

// reconsume sends basic.consume again for cons on ch and waits for
// consume-ok.
func (c *Connection) reconsume(ctx context.Context, ch *Channel, cons *consumer) error {
	m := c.lock()
	if !ch.liveLocked() {
		err := ch.wrapErr(statemachine.ErrChannelNotOpen)
		c.unlock(driver.FlushLater)
		return err
	}
	ch.addConsumerLocked(cons)
	o := cons.opts
	tok, err := m.Call(ch.id, &frames.BasicConsume{Queue: cons.queue, ConsumerTag: cons.tag, NoLocal: o.NoLocal, NoAck: o.NoAck, Exclusive: o.Exclusive, Arguments: o.Arguments})
	if err != nil {
		ch.dropConsumerLocked(cons.tag)
		c.unlock(driver.FlushLater)
		return err
	}
	w, err := c.awaitReplyLocked(ctx, ch, tok)
	if err != nil {
		return err
	}
	if w.err != nil {
		c.mu.Lock()
		if ch.consumers[cons.tag] == cons {
			ch.dropConsumerLocked(cons.tag)
		}
		c.mu.Unlock()
	}
	return w.err
}
