package proto

import (
	"errors"
	"fmt"
	"strings"
)

// ReplyCode is an AMQP reply code, carried by connection.close,
// channel.close and basic.return. A ReplyCode is itself an error so that
// errors.Is(err, proto.NotFound) matches any AMQP error with that code.
type ReplyCode uint16

// The reply codes of AMQP 0-9-1 (spec section 1.2, "constants").
const (
	ReplySuccess       ReplyCode = 200 // normal close
	ContentTooLarge    ReplyCode = 311 // soft: the message body was too large
	NoRoute            ReplyCode = 312 // soft: a mandatory message could not be routed
	NoConsumers        ReplyCode = 313 // soft: an immediate message found no consumer
	ConnectionForced   ReplyCode = 320 // hard: an operator closed the connection
	InvalidPath        ReplyCode = 402 // hard: the virtual host name is invalid
	AccessRefused      ReplyCode = 403 // soft: no permission for the resource (a refused login closes the connection with it too)
	NotFound           ReplyCode = 404 // soft: the entity does not exist
	ResourceLocked     ReplyCode = 405 // soft: another connection holds the resource exclusively
	PreconditionFailed ReplyCode = 406 // soft: the request conflicts with the entity's state
	FrameError         ReplyCode = 501 // hard: a malformed frame
	SyntaxError        ReplyCode = 502 // hard: bad field values in a frame
	CommandInvalid     ReplyCode = 503 // hard: a method not allowed in this state
	ChannelNotOpen     ReplyCode = 504 // hard: the spec's channel-error, a frame on a channel that is not open
	UnexpectedFrame    ReplyCode = 505 // hard: a frame of the wrong type for the state
	ResourceError      ReplyCode = 506 // hard: the server ran out of a resource
	NotAllowed         ReplyCode = 530 // hard: the request is not allowed (e.g. an unknown virtual host)
	NotImplemented     ReplyCode = 540 // hard: the peer does not implement the request
	InternalError      ReplyCode = 541 // hard: the peer's internal error
)

// String returns the code's spec name, e.g. "NOT_FOUND".
func (c ReplyCode) String() string {
	switch c {
	case ReplySuccess:
		return "REPLY_SUCCESS"
	case ContentTooLarge:
		return "CONTENT_TOO_LARGE"
	case NoRoute:
		return "NO_ROUTE"
	case NoConsumers:
		return "NO_CONSUMERS"
	case ConnectionForced:
		return "CONNECTION_FORCED"
	case InvalidPath:
		return "INVALID_PATH"
	case AccessRefused:
		return "ACCESS_REFUSED"
	case NotFound:
		return "NOT_FOUND"
	case ResourceLocked:
		return "RESOURCE_LOCKED"
	case PreconditionFailed:
		return "PRECONDITION_FAILED"
	case FrameError:
		return "FRAME_ERROR"
	case SyntaxError:
		return "SYNTAX_ERROR"
	case CommandInvalid:
		return "COMMAND_INVALID"
	case ChannelNotOpen:
		return "CHANNEL_ERROR"
	case UnexpectedFrame:
		return "UNEXPECTED_FRAME"
	case ResourceError:
		return "RESOURCE_ERROR"
	case NotAllowed:
		return "NOT_ALLOWED"
	case NotImplemented:
		return "NOT_IMPLEMENTED"
	case InternalError:
		return "INTERNAL_ERROR"
	}
	return fmt.Sprintf("REPLY_%d", uint16(c))
}

// Error makes a ReplyCode usable as an errors.Is target.
func (c ReplyCode) Error() string { return fmt.Sprintf("amqp: %d %s", uint16(c), c.String()) }

// IsHardError reports whether the spec classes the code as a hard error,
// one that closes the connection.
func (c ReplyCode) IsHardError() bool {
	switch c {
	case ConnectionForced, InvalidPath, FrameError, SyntaxError, CommandInvalid, ChannelNotOpen,
		UnexpectedFrame, ResourceError, NotAllowed, NotImplemented, InternalError:
		return true
	}
	return false
}

// IsSoftError reports whether the spec classes the code as a soft error,
// one that closes only the channel.
func (c ReplyCode) IsSoftError() bool {
	switch c {
	case ContentTooLarge, NoRoute, NoConsumers, AccessRefused, NotFound, ResourceLocked, PreconditionFailed:
		return true
	}
	return false
}

// Recoverable reports whether an error with this code may go away if the
// same operation is retried later, on a reopened channel or a new
// connection, following py-amqp's classification: content-too-large,
// no-consumers, resource-locked (channel level), connection-forced and
// resource-error (connection level). Not-found, access-refused, precondition
// failures and protocol errors will happen again and are not recoverable.
func (c ReplyCode) Recoverable() bool {
	switch c {
	case ContentTooLarge, NoConsumers, ResourceLocked, ConnectionForced, ResourceError:
		return true
	}
	return false
}

// RecoverableConnectionCodes returns the connection-level reply codes that
// Recoverable accepts (py-amqp's recoverable connection errors). The
// slice is new on every call.
func RecoverableConnectionCodes() []ReplyCode { return []ReplyCode{ConnectionForced, ResourceError} }

// RecoverableChannelCodes returns the channel-level reply codes that
// Recoverable accepts (py-amqp's recoverable channel errors). The slice is
// new on every call.
func RecoverableChannelCodes() []ReplyCode {
	return []ReplyCode{ContentTooLarge, NoConsumers, ResourceLocked}
}

// Origin says which side raised an error.
type Origin uint8

// The two sides of a connection.
const (
	ByPeer  Origin = iota // the broker sent the close
	ByLocal               // Warren closed, for example on a protocol violation by the broker
)

// String returns "peer" or "local".
func (o Origin) String() string {
	if o == ByLocal {
		return "local"
	}
	return "peer"
}

// Reply is the payload shared by connection.close and channel.close: the
// reply code and text, and the class and method that caused the close
// (zero when no method did).
type Reply struct {
	Code     ReplyCode
	Text     string
	ClassID  uint16
	MethodID uint16
}

// AMQPReply returns r; it lets both error types satisfy the Error interface.
func (r Reply) AMQPReply() Reply { return r }

func (r Reply) describe() string {
	name := r.Code.String()
	s := fmt.Sprintf("%d %s", uint16(r.Code), name)
	// RabbitMQ starts its texts with the code's name ("NOT_FOUND - no
	// queue …"): say it once.
	if text := strings.TrimPrefix(r.Text, name+" - "); text != "" {
		s += ": " + text
	}
	if r.ClassID != 0 || r.MethodID != 0 {
		s += fmt.Sprintf(" (class %d, method %d)", r.ClassID, r.MethodID)
	}
	return s
}

// Error is implemented by every AMQP-level error: ConnectionError and
// ChannelError. AMQPReply returns the reply code and text the error
// carries.
type Error interface {
	error
	AMQPReply() Reply
}

// ConnectionError is an error that closed, or is closing, the whole
// connection: a connection.close from the broker, or one Warren sent
// because the broker broke the protocol. Which type an error has follows
// from the method that carried it, never from the code: RabbitMQ refuses a
// login with connection.close 403 although 403 is a soft code.
type ConnectionError struct {
	Reply
	Origin Origin
}

// Error describes the close.
func (e *ConnectionError) Error() string {
	return fmt.Sprintf("amqp: connection closed by %s: %s", e.Origin, e.describe())
}

// Is matches a ReplyCode target with the same code.
func (e *ConnectionError) Is(target error) bool {
	c, ok := target.(ReplyCode)
	return ok && c != 0 && c == e.Code
}

// Recoverable reports whether a new connection may succeed where this one
// failed (see ReplyCode.Recoverable).
func (e *ConnectionError) Recoverable() bool { return e.Code.Recoverable() }

// ChannelError is an error that closed one channel: a channel.close from the
// broker (or from Warren), or a server-sent basic.cancel of a consumer that
// has no cancel callback (then ConsumerTag names it and Code is zero).
type ChannelError struct {
	Reply
	Channel     uint16
	Origin      Origin
	ConsumerTag string
}

// Error describes the close.
func (e *ChannelError) Error() string {
	if e.ConsumerTag != "" && e.Code == 0 {
		return fmt.Sprintf("amqp: consumer %q on channel %d cancelled by %s", e.ConsumerTag, e.Channel, e.Origin)
	}
	return fmt.Sprintf("amqp: channel %d closed by %s: %s", e.Channel, e.Origin, e.describe())
}

// Is matches a ReplyCode target with the same code.
func (e *ChannelError) Is(target error) bool {
	c, ok := target.(ReplyCode)
	return ok && c != 0 && c == e.Code
}

// Recoverable reports whether retrying on a reopened channel may succeed
// (see ReplyCode.Recoverable). A server-sent consumer cancel is recoverable:
// consuming again may succeed once the queue exists again.
func (e *ChannelError) Recoverable() bool {
	if e.Code == 0 && e.ConsumerTag != "" {
		return true
	}
	return e.Code.Recoverable()
}

// IsRecoverable reports whether err, or an error it wraps, is an AMQP
// error that retrying may cure (see ReplyCode.Recoverable for the codes:
// the recoverable connection and channel errors of py-amqp). It says nothing of network errors, which
// the client package classifies.
func IsRecoverable(err error) bool {
	var ce *ConnectionError
	if errors.As(err, &ce) {
		return ce.Recoverable()
	}
	var he *ChannelError
	if errors.As(err, &he) {
		return he.Recoverable()
	}
	return false
}
