package statemachine

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// ChannelState is the state of one channel id. Transitions:
//
//	Free ──OpenChannel──▶ Opening ──open-ok──▶ Open
//	Opening, Open ──CloseChannel──▶ Closing ──close-ok──▶ Free
//	Opening, Open ──channel.close from the peer (answered with close-ok)──▶ Free
//	Closing ──no close-ok within CloseTimeout──▶ Abandoned ──close-ok──▶ Free
type ChannelState uint8

// The channel states.
const (
	ChannelFree      ChannelState = iota // id not in use
	ChannelOpening                       // channel.open sent
	ChannelOpen                          // open-ok received
	ChannelClosing                       // we sent channel.close; only close and close-ok count
	ChannelAbandoned                     // our close timed out; the id stays reserved until close-ok
)

// String names the state.
func (s ChannelState) String() string {
	return [...]string{"free", "opening", "open", "closing", "abandoned"}[s]
}

// content assembly sub-states of a channel.
const (
	expectMethod = iota
	expectHeader
	expectBody
)

type request struct {
	key   frames.MethodKey
	token Token // 0 for channel.open, which has no token
	noAck bool  // basic.get: whether the message needs no ack
}

// requestFIFO holds the synchronous requests awaiting replies, oldest
// first; replies arrive in request order on each channel.
type requestFIFO struct {
	buf  []request
	head int
}

func (q *requestFIFO) push(r request) { q.buf = append(q.buf, r) }
func (q *requestFIFO) len() int       { return len(q.buf) - q.head }
func (q *requestFIFO) front() (request, bool) {
	if q.head == len(q.buf) {
		return request{}, false
	}
	return q.buf[q.head], true
}
func (q *requestFIFO) pop() {
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
}
func (q *requestFIFO) reset() { q.buf, q.head = q.buf[:0], 0 }

type consumer struct {
	noAck      bool
	cancelling bool // basic.cancel sent; deliveries until cancel-ok are still its
}

// returnable is a mandatory or immediate publish awaiting its confirm
// (others are never returned), remembered to tie a basic.return to it.
// They are kept apart from the confirm ring, which holds only the refs:
// a ring slot stays small however many publishes are outstanding.
type returnable struct {
	seq                  uint64
	exchange, routingKey string
}

// maxIdleReturnables is the largest returnables capacity kept once empty.
const maxIdleReturnables = 256

type channel struct {
	id      uint16
	state   ChannelState
	pending requestFIFO
	closeAt time.Time
	peerErr *proto.ChannelError // a channel.close from the peer that crossed ours

	consumers map[string]consumer

	confirming  bool
	confirms    Outstanding[any] // confirm mode: the refs of the publishes awaiting a confirm
	returnables []returnable     // confirm mode: the mandatory or immediate ones, in order, from retHead on
	retHead     int
	returns     []Message // confirm mode: returns waiting for their ack/nack (owned copies)
	lastReturn  uint64    // confirm mode: the publish the latest return was matched to
	flowActive  bool

	expect int      // content sub-state
	asm    *content // the message being assembled; nil until the first, and after Trim
}

// content is a channel's message in assembly (method, header, body
// frames). It is made on the channel's first content method and dropped
// by Trim while the channel is between messages, so that a quiet channel
// does not keep it.
type content struct {
	kind    EventKind
	req     request
	msg     Message
	remain  uint64
	skip    bool
	hdr     frames.ContentHeader
	hdrBuf  []byte // copy of the content header payload (its view must outlive compaction)
	bodyBuf []byte // assembly of multi-frame bodies
}

func (c *Conn) channel(id uint16) *channel {
	if int(id) < len(c.channels) {
		return c.channels[id]
	}
	return nil
}

// ChannelState returns the state of channel id.
func (c *Conn) ChannelState(id uint16) ChannelState {
	if ch := c.channel(id); ch != nil {
		return ch.state
	}
	return ChannelFree
}

// OpenChannel allocates the lowest free channel id and sends channel.open;
// EventChannelOpen follows. Requests and publishes may be pipelined on the
// channel before it opens.
func (c *Conn) OpenChannel() (uint16, error) {
	if c.state != StateOpen {
		return 0, c.notOpen()
	}
	limit := int(c.tuning.ChannelMax)
	id := 1
	for ; id <= limit && id < len(c.channels) && c.channels[id] != nil; id++ {
	}
	if id > limit {
		return 0, fmt.Errorf("%w (channel_max %d)", ErrNoFreeChannel, limit)
	}
	for len(c.channels) <= id {
		c.channels = append(c.channels, nil)
	}
	ch := &channel{id: uint16(id), state: ChannelOpening, flowActive: true}
	c.channels[id] = ch
	m := &frames.ChannelOpen{}
	_ = c.sendMethod(ch.id, m)
	ch.pending.push(request{key: m.Key()})
	return ch.id, nil
}

// CloseChannel sends channel.close; EventChannelClosed (Err nil) follows
// the broker's close-ok. Requests pending on the channel fail then, each
// with an EventReply whose Err is ErrClosed, reported just before it;
// replies that arrive meanwhile are discarded.
func (c *Conn) CloseChannel(id uint16, reply proto.Reply) error {
	ch, err := c.usable(id)
	if err != nil {
		return err
	}
	if reply.Code == 0 {
		reply.Code = proto.ReplySuccess
	}
	if len(reply.Text) > 255 {
		reply.Text = reply.Text[:255]
	}
	if err := c.sendMethod(id, &frames.ChannelClose{ReplyCode: uint16(reply.Code), ReplyText: reply.Text, ClassID: reply.ClassID, MethodID: reply.MethodID}); err != nil {
		return err
	}
	ch.state = ChannelClosing
	ch.closeAt = time.Time{}
	c.armClose = true
	c.closingChans++
	return nil
}

// usable returns channel id if requests may be sent on it.
func (c *Conn) usable(id uint16) (*channel, error) {
	if c.state != StateOpen {
		return nil, c.notOpen()
	}
	ch := c.channel(id)
	if ch == nil || (ch.state != ChannelOpen && ch.state != ChannelOpening) {
		state := ChannelFree
		if ch != nil {
			state = ch.state
		}
		return nil, fmt.Errorf("%w: channel %d is %s", ErrChannelNotOpen, id, state)
	}
	return ch, nil
}

// Call sends method m on channel id. A synchronous request (one whose
// m.ExpectsReply() is true) gets a fresh token, which Call returns: the
// EventReply that answers it carries the same Token, in the order the
// requests were sent on the channel, or fails it (Err set) if the channel
// or the connection closes first. Asynchronous methods (ack, nack,
// reject, recover-async) and NoWait variants have no reply and no token:
// Call returns 0 for them.
//
// Channel opening and closing, publishing and update-secret have their own
// methods. Call refuses (returning 0 and an error, without sending
// anything) any method a client must not send, and requests on a channel
// that is not open. For basic.consume with an empty ConsumerTag, Call
// generates a unique tag and stores it in m.
func (c *Conn) Call(id uint16, m frames.Method) (Token, error) {
	k := m.Key()
	switch {
	case id == 0 || k.ClassID() == frames.ClassConnection:
		return 0, fmt.Errorf("%w: %s on channel %d (use the Conn's own methods for the connection class)", ErrNotAllowed, k, id)
	case k == frames.MethodChannelOpen || k == frames.MethodChannelClose:
		return 0, fmt.Errorf("%w: use OpenChannel and CloseChannel for %s", ErrNotAllowed, k)
	case k == frames.MethodChannelCloseOK || k == frames.MethodChannelFlowOK || k == frames.MethodBasicCancelOK:
		// Answers to the server's channel.close, channel.flow and
		// basic.cancel: the machine sends them itself.
		return 0, fmt.Errorf("%w: %s is sent by the machine in answer to the server", ErrNotAllowed, k)
	case k.HasContent():
		return 0, fmt.Errorf("%w: use Publish for %s", ErrNotAllowed, k)
	case !k.SentByClient() || !k.Known():
		return 0, fmt.Errorf("%w: a client does not send %s", ErrNotAllowed, k)
	}
	ch, err := c.usable(id)
	if err != nil {
		return 0, err
	}
	req := request{key: k}
	switch m := m.(type) {
	case *frames.BasicConsume:
		if m.ConsumerTag == "" {
			for { // skip tags the user picked: a generated tag is unique
				c.tagSeq++
				m.ConsumerTag = "warren-" + strconv.FormatUint(uint64(id), 10) + "-" + strconv.FormatUint(c.tagSeq, 10)
				if _, used := ch.consumers[m.ConsumerTag]; !used {
					break
				}
			}
		}
		if _, dup := ch.consumers[m.ConsumerTag]; dup {
			return 0, fmt.Errorf("%w: %q", ErrConsumerTagInUse, m.ConsumerTag)
		}
		if err := c.sendMethod(id, m); err != nil {
			return 0, err
		}
		if ch.consumers == nil {
			ch.consumers = make(map[string]consumer)
		}
		ch.consumers[m.ConsumerTag] = consumer{noAck: m.NoAck}
		c.consuming++
	case *frames.BasicCancel:
		if err := c.sendMethod(id, m); err != nil {
			return 0, err
		}
		if m.NoWait {
			c.removeConsumer(ch, m.ConsumerTag)
		} else if cs, ok := ch.consumers[m.ConsumerTag]; ok {
			cs.cancelling = true
			ch.consumers[m.ConsumerTag] = cs
		}
	case *frames.ConfirmSelect:
		if err := c.sendMethod(id, m); err != nil {
			return 0, err
		}
		// The broker numbers every publish that reaches it after
		// confirm.select, so numbering starts now, not at select-ok.
		ch.confirming = true
	case *frames.BasicGet:
		req.noAck = m.NoAck
		if err := c.sendMethod(id, m); err != nil {
			return 0, err
		}
	default:
		if err := c.sendMethod(id, m); err != nil {
			return 0, err
		}
	}
	if !m.ExpectsReply() {
		return 0, nil
	}
	req.token = c.newToken()
	ch.pending.push(req)
	return req.token, nil
}

// removeConsumer forgets consumer tag on ch, if it is registered.
func (c *Conn) removeConsumer(ch *channel, tag string) {
	if _, ok := ch.consumers[tag]; ok {
		delete(ch.consumers, tag)
		c.consuming--
	}
}

// Consuming reports whether any channel has a consumer registered (from
// the basic.consume request until its cancel completes, the broker
// cancels it, or its channel ends): whether deliveries may arrive.
func (c *Conn) Consuming() bool { return c.consuming > 0 }

// Publish sends basic.publish with its content on channel id, the body
// split into frames of at most frame_max bytes. In confirm mode it returns
// the publish's sequence number (the delivery tag the broker's ack or nack
// will carry) and keeps ref, any value of the caller's (nil if unused), with
// the publish until it is settled: the ref comes back in the Publishes of
// the EventConfirm that settles it (or of the EventChannelClosed that
// gives it up), and in Message.PublishRef of a basic.return of it.
// Outside confirm mode it returns 0 and ref is not kept. A pointer ref
// costs no allocation. Nothing is sent when it returns an error.
func (c *Conn) Publish(id uint16, m *frames.BasicPublish, p *proto.Properties, body []byte, ref any) (uint64, error) {
	ch, err := c.usable(id)
	if err != nil {
		return 0, err
	}
	out, err := frames.AppendMessage(c.out, id, m, p, body, c.tuning.FrameMax)
	if err != nil {
		return 0, err
	}
	c.out = out
	c.sentSinceTick = true
	if c.cfg.Trace != nil {
		c.trace(Sent, id, fmt.Sprintf("%s %+v with %d-byte body", m.Key(), *m, len(body)))
		var flags proto.PropertyFlags
		if p != nil {
			flags = p.PresentFlags()
		}
		c.trace(Sent, id, fmt.Sprintf("content-header body-size=%d flags=0x%04x", len(body), uint16(flags)))
		for rest, max := len(body), int(c.tuning.FrameMax)-8; rest > 0; rest -= max {
			c.trace(Sent, id, fmt.Sprintf("content-body %d bytes", min(rest, max)))
		}
	}
	if !ch.confirming {
		return 0, nil
	}
	seq := ch.confirms.Next()
	ch.confirms.Push(seq, ref)
	if m.Mandatory || m.Immediate {
		ch.returnables = append(ch.returnables, returnable{seq: seq, exchange: m.Exchange, routingKey: m.RoutingKey})
	}
	return seq, nil
}

// Ack sends basic.ack for deliveryTag on channel id: Call with a
// *frames.BasicAck, without the allocation a method passed as an
// interface costs.
func (c *Conn) Ack(id uint16, deliveryTag uint64, multiple bool) error {
	if _, err := c.usable(id); err != nil {
		return err
	}
	c.scratch.ack = frames.BasicAck{DeliveryTag: deliveryTag, Multiple: multiple}
	return c.sendMethod(id, &c.scratch.ack)
}

// Nack sends basic.nack for deliveryTag on channel id, like Ack.
func (c *Conn) Nack(id uint16, deliveryTag uint64, multiple, requeue bool) error {
	if _, err := c.usable(id); err != nil {
		return err
	}
	c.scratch.nack = frames.BasicNack{DeliveryTag: deliveryTag, Multiple: multiple, Requeue: requeue}
	return c.sendMethod(id, &c.scratch.nack)
}

// Reject sends basic.reject for deliveryTag on channel id, like Ack.
func (c *Conn) Reject(id uint16, deliveryTag uint64, requeue bool) error {
	if _, err := c.usable(id); err != nil {
		return err
	}
	c.scratch.reject = frames.BasicReject{DeliveryTag: deliveryTag, Requeue: requeue}
	return c.sendMethod(id, &c.scratch.reject)
}

// Confirming reports whether channel id is in confirm mode.
func (c *Conn) Confirming(id uint16) bool {
	ch := c.channel(id)
	return ch != nil && ch.confirming
}

// Unconfirmed returns how many publishes on channel id await a confirm.
func (c *Conn) Unconfirmed(id uint16) int {
	if ch := c.channel(id); ch != nil {
		return ch.confirms.Len()
	}
	return 0
}

// FlowActive reports whether the broker lets channel id publish (false
// after channel.flow active=false, until active=true).
func (c *Conn) FlowActive(id uint16) bool {
	ch := c.channel(id)
	return ch == nil || ch.flowActive
}

// Consumers returns the consumer tags registered on channel id.
func (c *Conn) Consumers(id uint16) []string {
	return c.consumerTags(id, false)
}

// NoAckConsumers returns the tags of channel id's consumers that consume
// without acknowledgements (py-amqp's no_ack_consumers).
func (c *Conn) NoAckConsumers(id uint16) []string {
	return c.consumerTags(id, true)
}

func (c *Conn) consumerTags(id uint16, onlyNoAck bool) []string {
	ch := c.channel(id)
	if ch == nil {
		return nil
	}
	var tags []string
	for tag, cs := range ch.consumers {
		if !onlyNoAck || cs.noAck {
			tags = append(tags, tag)
		}
	}
	return tags
}

// closeAllChannels ends every channel with err (the connection's error).
func (c *Conn) closeAllChannels(err error) {
	for _, ch := range c.channels {
		if ch == nil {
			continue
		}
		if ch.state != ChannelAbandoned {
			c.channelGone(ch, err)
		}
		c.release(ch)
	}
}

// channelGone reports that ch can no longer be used: waiting returns are
// delivered, pending requests fail (a basic.get whose get-ok content was
// being assembled first), and the unconfirmed publishes are listed.
func (c *Conn) channelGone(ch *channel, err error) {
	for _, r := range ch.returns {
		c.events.push(Event{Kind: EventReturn, Channel: ch.id, Message: r})
	}
	ch.returns = nil
	if a := ch.asm; ch.expect != expectMethod && a.kind == EventReply && !a.skip {
		c.failRequest(ch.id, a.req, err) // its get-ok came, not all its content
	}
	c.failRequests(ch.id, &ch.pending, err)
	ch.pending = requestFIFO{}
	start := len(c.pubs)
	c.settle(&ch.confirms, 0, false, true)
	clear(ch.returnables)
	ch.returnables, ch.retHead = nil, 0
	c.consuming -= len(ch.consumers)
	ch.consumers = nil
	ch.expect = expectMethod
	ch.asm = nil
	pubs := c.publishesFrom(start)
	c.events.push(Event{Kind: EventChannelClosed, Channel: ch.id, Err: err, Publishes: pubs, Unconfirmed: len(pubs)})
}

// settle resolves tag (with multiple, every publish up to it; with all,
// every publish) in o, appending the publishes settled to the arena.
func (c *Conn) settle(o *Outstanding[any], tag uint64, multiple, all bool) int {
	// Room for every publish that may settle, at once: a multiple ack of
	// many publishes grows the arena once, not step by step.
	n := o.live
	switch {
	case all:
	case o.n == 0 || tag < o.first:
		n = 0
	case !multiple:
		n = 1
	default:
		n = int(min(uint64(o.live), tag-o.first+1))
	}
	c.pubs = slices.Grow(c.pubs, n)
	add := func(seq uint64, ref any) { c.pubs = append(c.pubs, Published{Seq: seq, Ref: ref}) }
	if all {
		return o.Drain(add)
	}
	return o.Resolve(tag, multiple, add)
}

// release frees ch's id.
func (c *Conn) release(ch *channel) {
	if ch.state == ChannelClosing {
		c.closingChans--
	}
	ch.state = ChannelFree
	c.channels[ch.id] = nil
}

// handleChannelFrame handles a frame on a channel other than 0.
func (c *Conn) handleChannelFrame(f frames.Frame) {
	ch := c.channel(f.Channel)
	if c.state != StateOpen {
		if c.state == StateClosing {
			return // discard: only channel 0's close and close-ok count now
		}
		c.violation(proto.ChannelNotOpen, 0, "%s frame on channel %d before the connection is open", f.Type, f.Channel)
		return
	}
	if ch == nil {
		c.violation(proto.ChannelNotOpen, 0, "%s frame on channel %d, which is not open", f.Type, f.Channel)
		return
	}
	if ch.state == ChannelClosing || ch.state == ChannelAbandoned {
		c.handleClosingChannelFrame(ch, f)
		return
	}
	switch f.Type {
	case frames.FrameMethod:
		if ch.expect != expectMethod {
			c.violation(proto.UnexpectedFrame, 0, "method frame on channel %d while its content is incomplete", ch.id)
			return
		}
		m, err := c.parser.ParseMethod(ch.id, f.Payload)
		if err != nil {
			c.violationErr(err)
			return
		}
		if c.cfg.Trace != nil {
			c.trace(Received, ch.id, describe(m))
		}
		c.handleChannelMethod(ch, m, f.Payload)
	case frames.FrameHeader:
		c.handleHeader(ch, f)
	case frames.FrameBody:
		c.handleBody(ch, f)
	}
}

// handleClosingChannelFrame: after we send channel.close, everything but
// close and close-ok is discarded (deliveries still in flight are normal).
func (c *Conn) handleClosingChannelFrame(ch *channel, f frames.Frame) {
	if f.Type != frames.FrameMethod {
		return
	}
	m, err := c.parser.ParseMethod(ch.id, f.Payload)
	if err != nil {
		c.violationErr(err)
		return
	}
	switch m := m.(type) {
	case *frames.ChannelClose:
		// Crossing closes: answer, keep waiting for our close-ok, and
		// report the peer's reason then (it says more than our own close).
		_ = c.sendMethod(ch.id, &frames.ChannelCloseOK{})
		if ch.peerErr == nil {
			ch.peerErr = &proto.ChannelError{Reply: proto.Reply{Code: proto.ReplyCode(m.ReplyCode), Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID}, Channel: ch.id, Origin: proto.ByPeer}
		}
	case *frames.ChannelCloseOK:
		if ch.state == ChannelClosing {
			var err error
			if ch.peerErr != nil {
				err = ch.peerErr
			}
			c.channelGone(ch, err)
		}
		c.release(ch)
	}
}

func (c *Conn) handleChannelMethod(ch *channel, m frames.Method, payload []byte) {
	switch m := m.(type) {
	case *frames.ChannelClose:
		_ = c.sendMethod(ch.id, &frames.ChannelCloseOK{})
		err := &proto.ChannelError{Reply: proto.Reply{Code: proto.ReplyCode(m.ReplyCode), Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID}, Channel: ch.id, Origin: proto.ByPeer}
		c.channelGone(ch, err)
		c.release(ch)
		return
	case *frames.ChannelFlow:
		ch.flowActive = m.Active
		_ = c.sendMethod(ch.id, &frames.ChannelFlowOK{Active: m.Active})
		c.events.push(Event{Kind: EventFlow, Channel: ch.id, Active: m.Active})
		return
	case *frames.BasicDeliver:
		c.beginContent(ch, EventDelivery, request{}, Message{ConsumerTag: m.ConsumerTag, DeliveryTag: m.DeliveryTag, Redelivered: m.Redelivered, Exchange: m.Exchange, RoutingKey: m.RoutingKey})
		return
	case *frames.BasicReturn:
		c.beginContent(ch, EventReturn, request{}, Message{ReplyCode: proto.ReplyCode(m.ReplyCode), ReplyText: m.ReplyText, Exchange: m.Exchange, RoutingKey: m.RoutingKey})
		return
	case *frames.BasicAck:
		c.handleConfirm(ch, m.Key(), m.DeliveryTag, m.Multiple, true)
		return
	case *frames.BasicNack:
		c.handleConfirm(ch, m.Key(), m.DeliveryTag, m.Multiple, false)
		return
	case *frames.BasicCancel:
		c.removeConsumer(ch, m.ConsumerTag)
		if !m.NoWait {
			_ = c.sendMethod(ch.id, &frames.BasicCancelOK{ConsumerTag: m.ConsumerTag})
		}
		c.events.push(Event{Kind: EventConsumerCancelled, Channel: ch.id, ConsumerTag: m.ConsumerTag})
		return
	}
	k := m.Key()
	req, ok := ch.pending.front()
	if !ok || !frames.AcceptsReply(req.key, k) || !k.SentByServer() {
		c.violation(proto.CommandInvalid, k, "unexpected %s on channel %d", k, ch.id)
		return
	}
	ch.pending.pop()
	switch m := m.(type) {
	case *frames.ChannelOpenOK:
		ch.state = ChannelOpen
		c.events.push(Event{Kind: EventChannelOpen, Channel: ch.id})
		return
	case *frames.BasicGetOK:
		c.beginContent(ch, EventReply, req, Message{DeliveryTag: m.DeliveryTag, Redelivered: m.Redelivered, Exchange: m.Exchange, RoutingKey: m.RoutingKey, MessageCount: m.MessageCount})
		return
	case *frames.BasicCancelOK:
		c.removeConsumer(ch, m.ConsumerTag)
	}
	owned, err := frames.DecodeMethod(ch.id, payload)
	if err != nil { // cannot happen: it parsed once already
		c.violationErr(err)
		return
	}
	c.events.push(Event{Kind: EventReply, Channel: ch.id, Token: req.token, Request: req.key, Method: owned})
}

func (c *Conn) beginContent(ch *channel, kind EventKind, req request, msg Message) {
	ch.expect = expectHeader
	if ch.asm == nil {
		ch.asm = new(content)
	}
	a := ch.asm
	a.kind, a.req, a.msg = kind, req, msg
	a.skip = false
}

func (c *Conn) handleHeader(ch *channel, f frames.Frame) {
	a := ch.asm
	if ch.expect != expectHeader {
		c.violation(proto.UnexpectedFrame, 0, "content header on channel %d without a content method", ch.id)
		return
	}
	// The header's view must survive until the body completes, possibly
	// after more Feed calls compact the input: keep a copy (reused).
	a.hdrBuf = append(a.hdrBuf[:0], f.Payload...)
	if err := a.hdr.Parse(ch.id, a.hdrBuf); err != nil {
		c.violationErr(err)
		return
	}
	if c.cfg.Trace != nil {
		c.trace(Received, ch.id, fmt.Sprintf("content-header body-size=%d flags=0x%04x", a.hdr.BodySize, uint16(a.hdr.Properties.Flags)))
	}
	a.msg.Properties = a.hdr.Properties
	a.msg.BodySize = a.hdr.BodySize
	a.remain = a.hdr.BodySize
	a.bodyBuf = a.bodyBuf[:0]
	if a.hdr.BodySize > c.cfg.MaxMessageSize {
		c.refuseTooLarge(ch)
	}
	if a.remain == 0 {
		c.completeContent(ch, nil)
		return
	}
	ch.expect = expectBody
}

// refuseTooLarge skips a message over MaxMessageSize: its body frames are
// dropped as they come, and a message that awaits an ack is rejected
// without requeue so that the broker does not redeliver it forever.
func (c *Conn) refuseTooLarge(ch *channel) {
	a := ch.asm
	a.skip = true
	a.msg.Properties = proto.PropertiesView{}
	needsAck := false
	switch a.kind {
	case EventDelivery:
		cs, known := ch.consumers[a.msg.ConsumerTag]
		needsAck = !known || !cs.noAck
	case EventReply:
		needsAck = !a.req.noAck
	}
	if needsAck {
		_ = c.sendMethod(ch.id, &frames.BasicReject{DeliveryTag: a.msg.DeliveryTag, Requeue: false})
	}
	c.events.push(Event{Kind: EventMessageTooLarge, Channel: ch.id, Request: a.req.key, Message: a.msg})
	if a.kind == EventReply { // the basic.get's answer
		c.events.push(Event{Kind: EventReply, Channel: ch.id, Token: a.req.token, Request: a.req.key, Message: a.msg,
			Err: fmt.Errorf("%w: get-ok of %d bytes on channel %d, limit %d", ErrMessageTooLarge, a.msg.BodySize, ch.id, c.cfg.MaxMessageSize)})
	}
}

func (c *Conn) handleBody(ch *channel, f frames.Frame) {
	a := ch.asm
	if ch.expect != expectBody {
		c.violation(proto.UnexpectedFrame, 0, "body frame on channel %d without a content header", ch.id)
		return
	}
	n := uint64(len(f.Payload))
	if n > a.remain {
		c.violation(proto.FrameError, 0, "body on channel %d is longer than the %d bytes announced", ch.id, a.msg.BodySize)
		return
	}
	a.remain -= n
	if c.cfg.Trace != nil {
		c.trace(Received, ch.id, fmt.Sprintf("content-body %d bytes", n))
	}
	if a.skip {
		if a.remain == 0 {
			ch.expect = expectMethod
		}
		return
	}
	if a.remain == 0 && len(a.bodyBuf) == 0 {
		c.completeContent(ch, f.Payload) // the whole body in one frame: no copy
		return
	}
	if need := uint64(len(a.bodyBuf)) + n; need > uint64(cap(a.bodyBuf)) {
		// Double, up to the announced size: the buffer never holds more
		// than twice what has arrived (a peer that announces a large body
		// and stalls costs what it sent), and a body of B bytes costs at
		// most 2B in allocations (append's gentler growth of large slices
		// costs about 5B).
		grown := make([]byte, len(a.bodyBuf), min(max(2*uint64(cap(a.bodyBuf)), need), a.msg.BodySize))
		copy(grown, a.bodyBuf)
		a.bodyBuf = grown
	}
	a.bodyBuf = append(a.bodyBuf, f.Payload...)
	if a.remain == 0 {
		c.completeContent(ch, a.bodyBuf)
	}
}

// keepBodyBufMax is the largest body buffer a channel keeps for the next
// message; a larger one is handed over with its message (BodyOwned).
const keepBodyBufMax = 1 << 20

func (c *Conn) completeContent(ch *channel, body []byte) {
	a := ch.asm
	ch.expect = expectMethod
	if a.skip {
		return
	}
	a.msg.Body = body
	// A large assembled body is not kept for the next message: it goes
	// with this one, and the caller need not copy it.
	handoff := len(a.bodyBuf) > 0 && cap(a.bodyBuf) > keepBodyBufMax
	a.msg.BodyOwned = handoff
	switch a.kind {
	case EventDelivery:
		c.events.push(Event{Kind: EventDelivery, Channel: ch.id, Message: a.msg})
	case EventReply:
		m := a.msg
		c.events.push(Event{Kind: EventReply, Channel: ch.id, Token: a.req.token, Request: a.req.key, Method: &frames.BasicGetOK{
			DeliveryTag: m.DeliveryTag, Redelivered: m.Redelivered, Exchange: m.Exchange, RoutingKey: m.RoutingKey, MessageCount: m.MessageCount,
		}, Message: m})
	case EventReturn:
		if !ch.confirming {
			c.events.push(Event{Kind: EventReturn, Channel: ch.id, Message: a.msg})
			break
		}
		// In confirm mode RabbitMQ sends basic.return just before the ack
		// or nack of the same publish: hold an owned copy until then.
		owned := a.msg
		buf := make([]byte, 0, len(a.hdrBuf)+len(body))
		buf = append(buf, a.hdrBuf...)
		buf = append(buf, body...)
		var h frames.ContentHeader
		_ = h.Parse(ch.id, buf[:len(a.hdrBuf)])
		owned.Properties = h.Properties
		owned.Body = buf[len(a.hdrBuf):]
		owned.PublishSeq, owned.PublishRef = ch.matchReturn(&owned)
		ch.returns = append(ch.returns, owned)
	}
	// Keep no view of the body: a single-frame body aliases the input
	// buffer, which ReleaseInput may hand back to the caller.
	a.msg.Body, a.msg.BodyOwned = nil, false
	if handoff {
		a.bodyBuf = nil
	}
}

func (c *Conn) handleConfirm(ch *channel, k frames.MethodKey, tag uint64, multiple, ack bool) {
	if !ch.confirming {
		c.violation(proto.CommandInvalid, k, "%s on channel %d, which is not in confirm mode", k, ch.id)
		return
	}
	if tag >= ch.confirms.Next() || (tag == 0 && !multiple) {
		c.violation(proto.PreconditionFailed, k, "%s for delivery tag %d, but only %d messages were published", k, tag, ch.confirms.Next()-1)
		return
	}
	if tag == 0 { // multiple with tag 0: everything outstanding
		tag = ch.confirms.Next() - 1
	}
	start := len(c.pubs)
	if c.settle(&ch.confirms, tag, multiple, false) == 0 && !multiple {
		c.violation(proto.PreconditionFailed, k, "%s for delivery tag %d, which was already confirmed", k, tag)
		return
	}
	settled := c.publishesFrom(start)
	if ch.retHead < len(ch.returnables) {
		ch.pruneReturnables()
	}
	if len(ch.returns) > 0 {
		ch.releaseReturns(c, tag, multiple, settled)
	}
	c.events.push(Event{Kind: EventConfirm, Channel: ch.id, DeliveryTag: tag, Multiple: multiple, Ack: ack, Publishes: settled})
}

// matchReturn finds the publish a basic.return (in confirm mode) gives
// back: the first unconfirmed mandatory or immediate publish after the
// previous return's, to the same exchange with the same routing key.
// RabbitMQ sends a publish's return while routing it, in publish order,
// and always before its ack; but it coalesces acks, so other acks (single
// or multiple) may come between a return and its own ack, and the next
// confirm alone does not name the publish. It returns the publish's
// sequence number and ref; 0 means no publish matches.
func (ch *channel) matchReturn(r *Message) (uint64, any) {
	for _, p := range ch.returnables[ch.retHead:] {
		if p.seq <= ch.lastReturn || p.exchange != r.Exchange || p.routingKey != r.RoutingKey {
			continue
		}
		var ref any
		if ch.confirms.Peek(p.seq, func(v any) { ref = v }) { // not confirmed yet
			ch.lastReturn = p.seq
			return p.seq, ref
		}
	}
	return 0, nil
}

// pruneReturnables forgets the returnable publishes older than the oldest
// unconfirmed publish (those settled out of order go once it passes them).
func (ch *channel) pruneReturnables() {
	oldest := ch.confirms.Next() - uint64(ch.confirms.n)
	for ch.retHead < len(ch.returnables) && ch.returnables[ch.retHead].seq < oldest {
		ch.returnables[ch.retHead] = returnable{}
		ch.retHead++
	}
	if ch.retHead == len(ch.returnables) {
		if cap(ch.returnables) > maxIdleReturnables {
			ch.returnables = nil
		} else {
			ch.returnables = ch.returnables[:0]
		}
		ch.retHead = 0
	}
}

// releaseReturns reports, just before a confirm of tag, the held returns
// whose publish it settles, in arrival order. A return no publish matched
// is released by the first confirm, the last of them named by tag (and
// given its ref, if the confirm settled it: settled lists what it
// settled) unless a matched return claims tag.
func (ch *channel) releaseReturns(c *Conn, tag uint64, multiple bool, settled []Published) {
	covered := func(seq uint64) bool { return seq != 0 && (seq == tag || multiple && seq < tag) }
	lastUnknown, claimed := -1, false
	for i, r := range ch.returns {
		if r.PublishSeq == 0 {
			lastUnknown = i
		} else if r.PublishSeq == tag {
			claimed = true
		}
	}
	kept := ch.returns[:0]
	for i, r := range ch.returns {
		switch {
		case r.PublishSeq == 0:
			if i == lastUnknown && !claimed {
				r.PublishSeq = tag
				if n := len(settled); n > 0 && settled[n-1].Seq == tag {
					r.PublishRef = settled[n-1].Ref
				}
			}
			c.events.push(Event{Kind: EventReturn, Channel: ch.id, Message: r})
		case covered(r.PublishSeq):
			c.events.push(Event{Kind: EventReturn, Channel: ch.id, Message: r})
		default:
			kept = append(kept, r)
		}
	}
	clear(ch.returns[len(kept):])
	ch.returns = kept
}
