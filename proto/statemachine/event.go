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
	// EventReply: a synchronous request on Channel was answered. Request
	// is the request's key and Method the reply (a new value the caller
	// may keep). For basic.get-ok, Message also holds the content.
	EventReply
	// EventDelivery: a basic.deliver with its content in Message.
	EventDelivery
	// EventReturn: a basic.return with its content in Message. In confirm
	// mode Message.PublishSeq names the publish that came back (it is
	// reported just before that publish's EventConfirm).
	EventReturn
	// EventConfirm: a basic.ack (Ack true) or basic.nack from the broker
	// in confirm mode, with DeliveryTag and Multiple as sent.
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
	// that needs an ack was rejected without requeue.
	EventMessageTooLarge
	// EventChannelClosed: Channel is closed (Err is nil after our own
	// clean close). Every request pending on it failed with Err, and
	// Unconfirmed publishes were never confirmed: treat them as not
	// delivered. The channel id may be reused by a later OpenChannel.
	EventChannelClosed
	// EventClosed: the connection is closed; Err says why (nil after our
	// own clean close). Every channel was reported closed before it.
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
// buffers: they are valid until the next Feed, NextEvent or HandleTimeout
// call. Copy what you keep.
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
	BodySize     uint64          // as announced by the content header
	Properties   proto.PropertiesView
	Body         []byte
}

// Event is one thing that happened, returned by Conn.NextEvent. Kind says
// which fields are set (see the EventKind constants). Byte slices alias the
// machine's buffers until the next Feed, NextEvent or HandleTimeout call.
type Event struct {
	Kind    EventKind
	Channel uint16

	Request frames.MethodKey // EventReply: the request answered
	Method  frames.Method    // EventReply: the reply (owned by the caller)

	Message Message // EventDelivery, EventReturn, EventMessageTooLarge, get-ok replies

	DeliveryTag uint64 // EventConfirm
	Multiple    bool   // EventConfirm
	Ack         bool   // EventConfirm: true for basic.ack, false for basic.nack

	ConsumerTag string // EventConsumerCancelled
	Active      bool   // EventFlow
	Reason      string // EventBlocked

	Unconfirmed int   // EventChannelClosed: publishes that will never be confirmed
	Err         error // EventChannelClosed, EventClosed
}

// eventQueue is a FIFO of events whose backing array is reused.
type eventQueue struct {
	buf  []Event
	head int
}

func (q *eventQueue) push(e Event) { q.buf = append(q.buf, e) }

// pop returns the oldest event, or nil when there is none. The pointer is
// valid until the next push: copy the event out at once. NextEvent copies
// it once, into its result; returning the 520-byte Event by value with an
// ok flag cost a sixth of a delivery's instructions in extra copies (see
// bench/README.md).
func (q *eventQueue) pop() *Event {
	if q.head == len(q.buf) {
		if q.head != 0 {
			clear(q.buf) // drop references to methods and errors
			q.buf, q.head = q.buf[:0], 0
		}
		return nil
	}
	q.head++
	return &q.buf[q.head-1]
}
