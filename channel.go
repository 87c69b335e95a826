package warren

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/warren-amqp/warren/internal/driver"
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Channel is an AMQP channel: the unit of ordering for requests,
// publishes and consumers. It is safe for concurrent use.
//
// After a channel error (for example a passive declare of a missing queue,
// 404), the requests pending at that moment fail with the *ChannelError,
// and the next call reopens the channel, as py-amqp does, re-applying the
// confirm mode, QoS and transaction mode set on it. Each opening is an
// incarnation (see Incarnation). The broker numbers deliveries and
// publishes from 1 again on every incarnation; the Channel does not: a
// delivery tag or confirm sequence number it reports is the broker's plus
// the count of earlier incarnations' tags, so it never repeats, and an
// acknowledgement for a delivery of an earlier incarnation fails with
// ErrStaleDelivery instead of acknowledging another message.
type Channel struct {
	conn *Connection

	// Guarded by the driver's lock. (The flags, the id and consSeq share
	// a word: an idle connection's footprint counts every byte.)
	id          uint16
	userClosed  bool   // Close was called
	finished    bool   // closed for good: listeners are closed
	restorer    bool   // a recovery's own channel: passes the gate, never restored itself
	txDirty     bool   // tx mode: published or settled since the last commit or rollback
	txLost      bool   // tx mode: a connection loss discarded the transaction in progress
	confirming  bool   // the application's intent, replayed on every incarnation (as qos and tx)
	tx          bool   // (see confirming)
	consSeq     uint32 // numbers consumers in the order they started
	incarnation uint64
	lastErr     error         // why the current incarnation closed; nil while open
	opened      chan struct{} // closed when the current incarnation's opening ends (openErr says how)
	openErr     error
	reopening   chan struct{} // closed when a reopening finishes
	closed      chan struct{} // closed when the incarnation Close closes has closed
	consumers   map[string]*consumer
	lastCons    *consumer // the consumer found for the last delivery

	// The application's intent, replayed on every incarnation (with
	// confirming and tx above).
	qos [2]*frames.BasicQos // [0] per consumer, [1] global (Global)

	// Offsets that keep tags increasing across incarnations: a tag the
	// application sees is the broker's plus the offset.
	tagOffset uint64 // delivery tags of earlier incarnations
	maxTag    uint64 // highest delivery tag of this incarnation
	seqOffset uint64 // confirm sequence numbers of earlier incarnations
	lastSeq   uint64 // highest sequence number of this incarnation

	closeListeners   []*listener[error]
	returnListeners  []*listener[Return]
	confirmListeners []*listener[ConfirmNotice]

	pub frames.BasicPublish // scratch for publish

	// A Config.Observer's per-publish state that no confirm holds, kept
	// for the channel's next publish (see observePublish).
	obsFree atomic.Pointer[observedPublish]
}

// ConfirmNotice is one basic.ack or basic.nack from the broker for
// publishes on a channel in confirm mode (see Channel.NotifyConfirm).
type ConfirmNotice struct {
	// DeliveryTag is the sequence number of the publish confirmed (with
	// Multiple: of the last of them), as in Confirmation.Seq.
	DeliveryTag uint64
	// Multiple: every unconfirmed publish up to DeliveryTag is confirmed.
	Multiple bool
	// Ack is true for basic.ack, false for basic.nack.
	Ack bool
}

// Return is a message the broker returned (basic.return): mandatory and
// unroutable, or immediate and unconsumed.
type Return struct {
	ReplyCode  ReplyCode
	ReplyText  string
	Exchange   string
	RoutingKey string
	Properties proto.Properties
	Body       []byte
	// PublishSeq is the confirm sequence number of the returned publish
	// (confirm mode only; 0 otherwise), as in Confirmation.Seq.
	PublishSeq uint64
}

// Channel opens a new channel.
func (c *Connection) Channel(ctx context.Context) (*Channel, error) {
	ch := &Channel{conn: c}
	if err := ch.open(ctx, true); err != nil {
		ch.abandon()
		return nil, err
	}
	return ch, nil
}

// open allocates an id, sends channel.open and replays the channel's
// modes; it waits for open-ok. Gated, it first waits for a recovery to
// finish (a recovery reopens channels ungated).
func (ch *Channel) open(ctx context.Context, gated bool) error {
	c := ch.conn
	m := c.lock()
	if gated && !ch.restorer {
		var err error
		if m, err = c.waitOpenLocked(ctx); err != nil {
			return err
		}
	}
	id, err := m.OpenChannel()
	if err != nil {
		c.unlock(driver.FlushLater)
		return err
	}
	ch.id = id
	ch.incarnation++
	ch.lastErr, ch.openErr = nil, nil
	opened := make(chan struct{})
	ch.opened = opened
	c.chans[id] = ch
	delete(c.between, ch)
	ch.replayLocked(m)
	c.unlock(driver.FlushNow)
	if err := c.await(ctx, opened); err != nil {
		return err
	}
	c.lock()
	defer c.unlock(driver.FlushLater)
	return ch.openErr
}

// replayLocked sends the modes the application set, right after
// channel.open. Nobody waits for their replies: a request that follows
// is answered after them.
func (ch *Channel) replayLocked(m *statemachine.Conn) {
	if ch.confirming {
		_, _ = m.Call(ch.id, &frames.ConfirmSelect{})
	}
	for _, q := range ch.qos {
		if q != nil {
			_, _ = m.Call(ch.id, q)
		}
	}
	if ch.tx {
		_, _ = m.Call(ch.id, &frames.TxSelect{})
	}
}

// openedLocked ends the current incarnation's opening.
func (ch *Channel) openedLocked(err error) {
	if ch.opened != nil {
		ch.openErr = err
		close(ch.opened)
		ch.opened = nil
	}
}

// abandon closes a channel whose opening failed or was given up, so that
// its id is not held by a Channel nobody has.
func (ch *Channel) abandon() {
	c := ch.conn
	m := c.lock()
	ch.userClosed = true
	delete(c.between, ch)
	if ch.lastErr == nil && ch.id != 0 {
		_ = m.CloseChannel(ch.id, proto.Reply{Code: proto.ReplySuccess, Text: "open abandoned"})
	}
	c.unlock(driver.FlushLater)
}

// ready makes sure the channel is open, reopening it after a channel
// error, and waits while the connection recovers. Concurrent callers
// share one reopening.
func (ch *Channel) ready(ctx context.Context) error {
	c := ch.conn
	for {
		m := c.lock()
		if !ch.restorer && !ch.userClosed {
			var err error
			if m, err = c.waitOpenLocked(ctx); err != nil {
				return err
			}
		}
		switch {
		case ch.userClosed:
			c.unlock(driver.FlushLater)
			return ErrClosed
		case ch.reopening != nil:
			wait := ch.reopening
			c.unlock(driver.FlushLater)
			if err := c.await(ctx, wait); err != nil {
				return err
			}
			continue
		case ch.lastErr == nil:
			c.unlock(driver.FlushLater)
			return nil
		}
		if m.State() != statemachine.StateOpen {
			err := c.closedErrLocked(m)
			c.unlock(driver.FlushLater)
			return err
		}
		done := make(chan struct{})
		ch.reopening = done
		c.unlock(driver.FlushLater)
		err := ch.open(ctx, false)
		c.lock()
		ch.reopening = nil
		close(done)
		id, inc := ch.id, ch.incarnation
		c.unlock(driver.FlushLater)
		if err != nil {
			return fmt.Errorf("amqp: reopening channel: %w", err)
		}
		c.log.Debug("amqp channel reopened after an error", "channel", id, "incarnation", inc)
		return nil
	}
}

// liveLocked reports whether the current incarnation is open: its
// deliveries may be settled.
func (ch *Channel) liveLocked() bool {
	return ch.lastErr == nil && ch.reopening == nil && !ch.userClosed
}

// openLocked reports whether calls may go out on the current incarnation
// without (re)opening it, or waiting for a recovery, first.
func (ch *Channel) openLocked() bool {
	return ch.liveLocked() && (ch.conn.state == ConnOpen || ch.restorer)
}

// ID returns the channel's current id (it may change when the channel is
// reopened after an error).
func (ch *Channel) ID() uint16 {
	ch.conn.lock()
	defer ch.conn.unlock(driver.FlushLater)
	return ch.id
}

// Incarnation counts how often the channel was opened: 1 at first, +1 for
// each reopening, after a channel error or by a connection recovery.
func (ch *Channel) Incarnation() uint64 {
	ch.conn.lock()
	defer ch.conn.unlock(driver.FlushLater)
	return ch.incarnation
}

// call sends a synchronous (or asynchronous) method and, when it expects a
// reply, waits for it.
func (ch *Channel) call(ctx context.Context, method frames.Method) (frames.Method, *Delivery, error) {
	if err := ch.ready(ctx); err != nil {
		return nil, nil, err
	}
	c := ch.conn
	m := c.lock()
	tok, err := m.Call(ch.id, method)
	if err != nil {
		err = ch.wrapErr(err)
		c.unlock(driver.FlushLater)
		return nil, nil, err
	}
	if tok == 0 { // no reply
		c.unlock(driver.FlushLater)
		return nil, nil, nil
	}
	w, err := c.awaitReplyLocked(ctx, ch, tok)
	if err != nil {
		return nil, nil, err
	}
	return w.reply, w.msg, w.err
}

// wrapErr adds why the channel closed to a refusal of the core.
func (ch *Channel) wrapErr(err error) error {
	if errors.Is(err, statemachine.ErrChannelNotOpen) && ch.lastErr != nil {
		return fmt.Errorf("%w: %w", err, ch.lastErr)
	}
	return err
}

// onClosedLocked handles the end of an incarnation: unconfirmed
// publishes fail with ErrMaybeSent, the offsets move past the
// incarnation's tags, and, unless a recovery will restore the channel,
// consumers end and the listeners learn why. (The requests pending on it
// failed by their own events just before.)
func (ch *Channel) onClosedLocked(m *statemachine.Conn, e *statemachine.Event) {
	c := ch.conn
	failWith := e.Err
	if failWith == nil {
		failWith = ErrClosed
	}
	// A 404 naming an exchange refused the earliest unconfirmed publish
	// to it for certain, and the broker discarded every later one: those
	// were not sent. The earlier ones may have been.
	notSentFrom := len(e.Publishes)
	if x, ok := refusedExchange(e.Err); ok {
		for i, p := range e.Publishes {
			if cf, _ := p.Ref.(*Confirmation); cf != nil && cf.exchange == x {
				notSentFrom = i
				break
			}
		}
	}
	for i, p := range e.Publishes {
		if cf, _ := p.Ref.(*Confirmation); cf != nil {
			if i >= notSentFrom {
				cf.resolve(false, fmt.Errorf("%w: %w", ErrNotSent, failWith))
			} else {
				cf.resolve(false, fmt.Errorf("%w: %w", ErrMaybeSent, failWith))
			}
		}
	}
	// The broker numbers the next incarnation's deliveries and publishes
	// from 1 again: from now on this incarnation's tags are at or below
	// the offsets, hence stale.
	ch.tagOffset += ch.maxTag
	ch.maxTag = 0
	ch.seqOffset += ch.lastSeq
	ch.lastSeq = 0
	ch.openedLocked(failWith)
	if ch.closed != nil {
		close(ch.closed)
		ch.closed = nil
	}
	ch.lastErr = failWith
	if ch.tx && ch.txDirty {
		ch.txLost, ch.txDirty = true, false
	}
	// Restored: the connection was lost and a recovery follows, or one is
	// under way. The consumers stay, to consume again on the next
	// incarnation; nobody but the recovery's listeners hears of it.
	restored := !ch.userClosed && (c.state == ConnRecovering || (m.State() != statemachine.StateOpen && c.recoversLocked(m.Err())))
	if restored {
		if !ch.restorer {
			c.addBetween(ch)
		}
		return
	}
	// Closed alone (by Close or a channel error), the channel takes its
	// consumers with it for good: a reopened channel does not consume
	// again, so they leave the topology. When the whole connection closes
	// they stay in the record.
	channelOnly := m.State() == statemachine.StateOpen
	for tag, cons := range ch.consumers {
		cons.err = failWith
		c.acts = append(c.acts, action{kind: actEndConsumer, cons: cons})
		ch.dropConsumerLocked(tag)
		if channelOnly {
			c.topo.deleteConsumer(tag)
		}
	}
	if e.Err != nil {
		for _, l := range ch.closeListeners {
			l.post(e.Err)
		}
	}
	if ch.userClosed || !channelOnly || ch.restorer {
		ch.finishLocked()
	} else {
		c.addBetween(ch)
	}
}

// addBetween notes a Channel between incarnations.
func (c *Connection) addBetween(ch *Channel) {
	if c.between == nil {
		c.between = make(map[*Channel]struct{})
	}
	c.between[ch] = struct{}{}
}

// finishLocked closes the channel's listeners: no incarnation follows.
func (ch *Channel) finishLocked() {
	if ch.finished {
		return
	}
	ch.finished = true
	delete(ch.conn.between, ch)
	for _, l := range ch.closeListeners {
		l.close()
	}
	for _, l := range ch.returnListeners {
		l.close()
	}
	for _, l := range ch.confirmListeners {
		l.close()
	}
	ch.closeListeners, ch.returnListeners, ch.confirmListeners = nil, nil, nil
}

// Close closes the channel; later calls fail with ErrClosed.
func (ch *Channel) Close(ctx context.Context) error {
	c := ch.conn
	m := c.lock()
	if ch.userClosed {
		c.unlock(driver.FlushLater)
		return nil
	}
	ch.userClosed = true
	if ch.lastErr != nil {
		// Between incarnations (after a channel error, or during a
		// recovery, which then leaves it closed): consumers a recovery
		// kept end here.
		for tag, cons := range ch.consumers {
			ch.dropConsumerLocked(tag)
			c.topo.deleteConsumer(tag)
			cons.endDetachedLocked(ErrClosed)
		}
		ch.finishLocked()
		c.unlock(driver.FlushLater)
		return nil
	}
	if err := m.CloseChannel(ch.id, proto.Reply{Code: proto.ReplySuccess, Text: "closed by client"}); err != nil {
		c.unlock(driver.FlushLater)
		return nil // the connection is already gone
	}
	closed := make(chan struct{})
	ch.closed = closed
	c.unlock(driver.FlushNow)
	return c.await(ctx, closed)
}

// Err returns why the channel's current incarnation closed (a
// *ChannelError from the broker, or the connection's error), or nil while
// it is open. After a channel error the next call reopens the channel and
// Err becomes nil again; use NotifyClose to see every error as it happens,
// for example when only publishing without confirms.
func (ch *Channel) Err() error {
	ch.conn.lock()
	defer ch.conn.unlock(driver.FlushLater)
	if ch.userClosed && errors.Is(ch.lastErr, ErrClosed) {
		return ErrClosed
	}
	return ch.lastErr
}

// NotifyClose registers c to receive the error that closes each
// incarnation of the channel: a *ChannelError from the broker, or the
// connection's error. The channel's own Close sends nothing. c is closed
// when no incarnation can follow: after Close, or when the connection
// closes. Notifications are never dropped and never stall the connection
// (see Connection.NotifyClose). It returns c.
func (ch *Channel) NotifyClose(c chan error) chan error {
	return addListener(ch, &ch.closeListeners, newChanListener(c, ch.conn.log, "channel close"), c)
}

// NotifyReturn registers c to receive every message the broker returns on
// this channel, in order; c is closed with the channel (see NotifyClose).
// Returns are never dropped: while c has no room they are held, and a
// listener that falls far behind is logged. It returns c.
func (ch *Channel) NotifyReturn(c chan Return) chan Return {
	return addListener(ch, &ch.returnListeners, newChanListener(c, ch.conn.log, "return"), c)
}

// NotifyConfirm registers c to receive every basic.ack and basic.nack on
// this channel, in order, with its delivery tag (as Confirmation.Seq
// numbers publishes) and multiple flag; c is closed with the channel (see
// NotifyClose). Notices are never dropped: while c has no room they are
// held (one per confirm the broker sends, so at most one per publish),
// and a listener that falls far behind is logged. It returns c.
func (ch *Channel) NotifyConfirm(c chan ConfirmNotice) chan ConfirmNotice {
	return addListener(ch, &ch.confirmListeners, newChanListener(c, ch.conn.log, "confirm"), c)
}

// addListener registers l on ch, or closes it at once if ch has finished.
func addListener[T any](ch *Channel, list *[]*listener[T], l *listener[T], c chan T) chan T {
	ch.conn.lock()
	defer ch.conn.unlock(driver.FlushLater)
	if ch.finished {
		l.close()
		return c
	}
	*list = append(*list, l)
	return c
}

// refusedExchange returns the exchange a broker's channel.close 404 names
// ("NOT_FOUND - no exchange 'X' in vhost 'V'", RabbitMQ's wording), if err
// is one.
func refusedExchange(err error) (string, bool) {
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Code != NotFound || ce.Origin != proto.ByPeer {
		return "", false
	}
	_, rest, ok := strings.Cut(ce.Text, "no exchange '")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, "' in vhost '")
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}
