package statemachine

import (
	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// EventKind says what an Event reports.
type EventKind uint8

// The events a Conn reports. Each says which Event fields it sets.
const (
	// EventNone: nothing to report; NextEvent is drained.
	EventNone EventKind = iota
	// EventConnected: the handshake finished (connection.open-ok).
	// Conn.Tuning and Conn.ServerProperties now hold the negotiated values.
	EventConnected
	// EventChannelOpen: Channel is open (channel.open-ok).
	EventChannelOpen
	// EventReply: a synchronous request on Channel (0 for
	// update-secret) was answered. Token is the token Call or
	// UpdateSecret returned for it and Request the request's key. Method
	// is the reply (a new value the caller may keep), or nil with Err set
	// when the request failed because its channel or the connection
	// closed first; such failures are reported, in request order, just
	// before the channel's EventChannelClosed (or, for update-secret,
	// the connection's EventClosed). For basic.get-ok, Message also holds
	// the content; a get-ok whose message is over Config.MaxMessageSize
	// fails the basic.get with an Err wrapping ErrMessageTooLarge (Method
	// nil, Message holding the get-ok's fields), just after its
	// EventMessageTooLarge.
	EventReply
	// EventDelivery: a basic.deliver with its content in Message.
	EventDelivery
	// EventReturn: a basic.return with its content in Message. In confirm
	// mode Message.PublishSeq and Message.PublishRef name the publish
	// that came back (it is reported just before that publish's
	// EventConfirm).
	EventReturn
	// EventConfirm: a basic.ack (Ack true) or basic.nack from the broker
	// in confirm mode, with DeliveryTag and Multiple as sent (a multiple
	// with tag 0 is reported with the last tag published). Publishes
	// lists the publishes it settles, in sequence order: the one named by
	// DeliveryTag, or for a multiple every publish up to DeliveryTag not
	// settled before.
	EventConfirm
	// EventConsumerCancelled: the broker cancelled ConsumerTag (for
	// example, its queue was deleted).
	EventConsumerCancelled
	// EventFlow: the broker asked to pause (Active false) or resume
	// publishing on Channel; the machine already answered flow-ok.
	EventFlow
	// EventBlocked: the broker blocked the connection (Reason says why).
	EventBlocked
	// EventUnblocked: the broker unblocked the connection.
	EventUnblocked
	// EventMessageTooLarge: a message on Channel announced more than
	// Config.MaxMessageSize bytes; Message holds its method fields (and
	// Message.BodySize), and the body was skipped. A delivery or get-ok
	// that needs an ack was rejected without requeue. For a get-ok,
	// Request is basic.get, and an EventReply failing the basic.get
	// follows.
	EventMessageTooLarge
	// EventChannelClosed: Channel is closed (Err is nil after our own
	// clean close). Every request pending on it was failed by an
	// EventReply reported just before. Publishes lists, in sequence
	// order, the publishes that will never be confirmed (Unconfirmed is
	// their number): treat them as not delivered. The channel id may be
	// reused by a later OpenChannel.
	EventChannelClosed
	// EventClosed: the connection is closed; Err says why (nil after our
	// own clean close). Every channel was reported closed before it, and
	// every pending update-secret failed by an EventReply.
	EventClosed
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventNone:
		return "none"
	case EventConnected:
		return "connected"
	case EventChannelOpen:
		return "channel-open"
	case EventReply:
		return "reply"
	case EventDelivery:
		return "delivery"
	case EventReturn:
		return "return"
	case EventConfirm:
		return "confirm"
	case EventConsumerCancelled:
		return "consumer-cancelled"
	case EventFlow:
		return "flow"
	case EventBlocked:
		return "blocked"
	case EventUnblocked:
		return "unblocked"
	case EventMessageTooLarge:
		return "message-too-large"
	case EventChannelClosed:
		return "channel-closed"
	case EventClosed:
		return "closed"
	}
	return "unknown"
}

// Message is the content of a delivery, return or get-ok and the fields of
// the method that carried it. Properties and Body alias the machine's
// buffers: they are valid until the next Feed, Adopt, NextEvent or
// HandleTimeout call. Copy what you keep (a Body with BodyOwned set is
// yours to keep as it is).
type Message struct {
	ConsumerTag  string          // deliver
	DeliveryTag  uint64          // deliver, get-ok
	Redelivered  bool            // deliver, get-ok
	Exchange     string          // deliver, return, get-ok
	RoutingKey   string          // deliver, return, get-ok
	MessageCount uint32          // get-ok: messages left in the queue
	ReplyCode    proto.ReplyCode // return
	ReplyText    string          // return
	PublishSeq   uint64          // return in confirm mode: the returned publish (0: unknown)
	PublishRef   any             // return in confirm mode: the ref given to Publish for PublishSeq
	BodySize     uint64          // as announced by the content header
	Properties   proto.PropertiesView
	Body         []byte
	// BodyOwned is set when the machine has let go of Body (a body over
	// 1 MiB assembled from several frames): the caller may keep it
	// without copying. Otherwise Body aliases the machine's buffers.
	BodyOwned bool
}

// Event is one thing that happened, returned by Conn.NextEvent. Kind says
// which fields are set (see the EventKind constants). Byte slices and
// Publishes alias the machine's buffers until the next Feed, Adopt,
// NextEvent or HandleTimeout call: copy what you keep.
type Event struct {
	Kind    EventKind
	Channel uint16

	Token   Token            // EventReply: the request answered
	Request frames.MethodKey // EventReply: the request answered
	Method  frames.Method    // EventReply: the reply (owned by the caller); nil when the request failed

	Message Message // EventDelivery, EventReturn, EventMessageTooLarge, get-ok replies

	DeliveryTag uint64 // EventConfirm
	Multiple    bool   // EventConfirm
	Ack         bool   // EventConfirm: true for basic.ack, false for basic.nack

	ConsumerTag string // EventConsumerCancelled
	Active      bool   // EventFlow
	Reason      string // EventBlocked

	// Publishes: for EventConfirm the publishes settled, for
	// EventChannelClosed those never to be confirmed; in sequence order.
	// Valid until the next Feed, Adopt, NextEvent or HandleTimeout call.
	Publishes   []Published
	Unconfirmed int   // EventChannelClosed: len(Publishes)
	Err         error // EventChannelClosed, EventClosed, failed EventReply
}

// Token identifies one synchronous request on a Conn, as returned by
// Conn.Call and Conn.UpdateSecret. Tokens are unique for the Conn's life
// and never 0; 0 stands for "no request" (a method without a reply). Every
// token is answered by exactly one EventReply with the same Token: the
// reply, or the request's failure when its channel or the connection
// closed first.
type Token uint64

// Published is one publish made in confirm mode: its sequence number
// (the delivery tag of its confirm) and the ref passed to Conn.Publish.
type Published struct {
	Seq uint64
	Ref any
}

// eventQueue is a FIFO of events whose backing array is reused.
type eventQueue struct {
	buf  []Event
	head int
}

func (q *eventQueue) push(e Event) { q.buf = append(q.buf, e) }

// maxIdleEvents is the largest event queue capacity kept once drained: a
// burst's larger array is dropped, so that an idle connection stays small.
const maxIdleEvents = 64

func (q *eventQueue) empty() bool { return q.head == len(q.buf) }

// pop returns the oldest event, or nil when there is none. The pointer is
// valid until the next push: copy the event out at once. NextEvent copies
// it once, into its result; returning the Event of several hundred bytes
// by value with an ok flag cost a sixth of a delivery's instructions in
// extra copies (see bench/README.md).
func (q *eventQueue) pop() *Event {
	if q.head == len(q.buf) {
		if q.head != 0 {
			if cap(q.buf) > maxIdleEvents {
				q.buf = nil
			} else {
				clear(q.buf) // drop references to methods, errors and refs
				q.buf = q.buf[:0]
			}
			q.head = 0
		}
		return nil
	}
	q.head++
	return &q.buf[q.head-1]
}

// maxIdlePublishes is the largest Published arena kept between events;
// see Conn.resetPublished.
const maxIdlePublishes = 4096
