package warren

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// Error types shared with every layer of Warren: match them with errors.As,
// and reply codes with errors.Is (errors.Is(err, warren.NotFound)).
type (
	// Error is implemented by every AMQP-level error.
	Error = proto.Error
	// ConnectionError is an error that closed the connection.
	ConnectionError = proto.ConnectionError
	// ChannelError is an error that closed a channel (or, with ConsumerTag
	// set and no code, a consumer cancelled by the broker).
	ChannelError = proto.ChannelError
	// ReplyCode is an AMQP reply code; each is also an errors.Is target.
	ReplyCode = proto.ReplyCode
)

// Reply codes users test for most often, as errors.Is targets.
const (
	NotFound           = proto.NotFound
	AccessRefused      = proto.AccessRefused
	PreconditionFailed = proto.PreconditionFailed
	ResourceLocked     = proto.ResourceLocked
	NoRoute            = proto.NoRoute
	NotAllowed         = proto.NotAllowed
	ConnectionForced   = proto.ConnectionForced
	NotImplemented     = proto.NotImplemented
)

// Errors of the client itself.
var (
	// ErrClosed is returned by operations on a closed Connection or Channel.
	ErrClosed = statemachine.ErrClosed
	// ErrConnectionLost reports that the byte stream ended unexpectedly.
	ErrConnectionLost = statemachine.ErrConnectionLost
	// ErrHeartbeatTimeout reports a broker that went silent.
	ErrHeartbeatTimeout = statemachine.ErrHeartbeatTimeout
	// ErrHandshakeTimeout reports a broker that did not complete the
	// handshake (connection.start to open-ok) in time: the context's
	// deadline, else 30 s.
	ErrHandshakeTimeout = statemachine.ErrHandshakeTimeout
	// ErrCloseTimeout reports a close handshake the broker never finished
	// (no close-ok within 10 s, or the context's deadline); the connection
	// is closed all the same.
	ErrCloseTimeout = statemachine.ErrCloseTimeout
	// ErrMessageTooLarge fails a Get whose message is larger than
	// Config.MaxMessageSize (the message was rejected without requeue).
	ErrMessageTooLarge = statemachine.ErrMessageTooLarge
	// ErrMaybeSent reports a publish whose outcome is unknown: it was handed
	// to the connection, which then failed before the broker confirmed it.
	ErrMaybeSent = errors.New("amqp: publish may have reached the broker; its outcome is unknown")
	// ErrNotSent reports a publish the broker certainly refused: the
	// channel closed with 404 NOT_FOUND naming the exchange of the
	// earliest unconfirmed publish to it, and this publish is that one or
	// a later one on the channel (the broker discards what follows a
	// channel error). The error wraps the channel's *ChannelError too.
	ErrNotSent = errors.New("amqp: publish refused by the broker: not sent")
	// ErrNotConfirmMode is returned when a confirmation is awaited on a
	// channel that is not in confirm mode.
	ErrNotConfirmMode = errors.New("amqp: channel is not in confirm mode")
	// ErrRecovering is returned at once, under Recovery.FailFast, by a
	// call made while the connection recovers (without FailFast, calls
	// wait for the recovery, bounded by their contexts).
	ErrRecovering = errors.New("amqp: the connection is recovering")
	// ErrGaveUp is wrapped by the error that ends a connection whose
	// recovery ran out of attempts (Recovery.MaxAttempts); the last
	// attempt's error is wrapped too.
	ErrGaveUp = errors.New("amqp: recovery gave up")
	// ErrSecretRefused wraps the 530 NOT_ALLOWED connection error with
	// which a broker answers an update-secret it refuses; recovery treats
	// it as recoverable and dials again with the configured credentials.
	ErrSecretRefused = errors.New("amqp: the broker refused the updated secret")
	// ErrTxRolledBack is returned by TxCommit when a connection loss
	// discarded the transaction in progress: nothing of it was committed
	// (what followed the recovery was rolled back too).
	ErrTxRolledBack = errors.New("amqp: transaction rolled back by a connection loss; nothing was committed")
	// ErrStaleDelivery is returned when acknowledging a delivery that came
	// from an earlier incarnation of a reopened channel: its delivery tag
	// would name another message.
	ErrStaleDelivery = errors.New("amqp: delivery belongs to a closed incarnation of the channel")
)

// IsRecoverable reports whether retrying may cure err: AMQP errors that
// py-amqp classes as recoverable (see proto.ReplyCode.Recoverable), and
// network failures (a lost connection, a missed heartbeat, a reset), and
// a connection Warren closed because the broker's bytes broke the
// protocol (a ConnectionError with Origin ByLocal: a corrupted stream),
// and a 530 answering our own update-secret (ErrSecretRefused), for
// which a new connection may succeed.
func IsRecoverable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrSecretRefused) {
		// A 530 is not recoverable in itself; as the answer to our own
		// update-secret it is: dial again with fresh credentials.
		return true
	}
	var ce *proto.ConnectionError
	if errors.As(err, &ce) && ce.Origin == proto.ByLocal {
		// The broker (or something between) broke the protocol: the
		// byte stream is unusable, a fresh connection may be fine.
		return true
	}
	var ae proto.Error
	if errors.As(err, &ae) {
		return proto.IsRecoverable(err)
	}
	var ne net.Error
	return errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrHeartbeatTimeout) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, ErrRecovering) ||
		errors.Is(err, ErrSecretRefused) || errors.As(err, &ne)
}
