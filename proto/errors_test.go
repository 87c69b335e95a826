package proto

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// specCodes are the reply codes of AMQP 0-9-1's constants section, with the
// spec's name and class (hard closes the connection, soft the channel;
// reply-success is neither).
var specCodes = []struct {
	code ReplyCode
	num  uint16
	name string
	hard bool
	soft bool
	// recoverable follows py-amqp's RecoverableChannelError and
	// RecoverableConnectionError subclasses.
	recoverable bool
}{
	{ReplySuccess, 200, "REPLY_SUCCESS", false, false, false},
	{ContentTooLarge, 311, "CONTENT_TOO_LARGE", false, true, true},
	{NoRoute, 312, "NO_ROUTE", false, true, false},
	{NoConsumers, 313, "NO_CONSUMERS", false, true, true},
	{ConnectionForced, 320, "CONNECTION_FORCED", true, false, true},
	{InvalidPath, 402, "INVALID_PATH", true, false, false},
	{AccessRefused, 403, "ACCESS_REFUSED", false, true, false},
	{NotFound, 404, "NOT_FOUND", false, true, false},
	{ResourceLocked, 405, "RESOURCE_LOCKED", false, true, true},
	{PreconditionFailed, 406, "PRECONDITION_FAILED", false, true, false},
	{FrameError, 501, "FRAME_ERROR", true, false, false},
	{SyntaxError, 502, "SYNTAX_ERROR", true, false, false},
	{CommandInvalid, 503, "COMMAND_INVALID", true, false, false},
	{ChannelNotOpen, 504, "CHANNEL_ERROR", true, false, false},
	{UnexpectedFrame, 505, "UNEXPECTED_FRAME", true, false, false},
	{ResourceError, 506, "RESOURCE_ERROR", true, false, true},
	{NotAllowed, 530, "NOT_ALLOWED", true, false, false},
	{NotImplemented, 540, "NOT_IMPLEMENTED", true, false, false},
	{InternalError, 541, "INTERNAL_ERROR", true, false, false},
}

func TestReplyCodes(t *testing.T) {
	for _, tc := range specCodes {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.num, uint16(tc.code))
			require.Equal(t, tc.name, tc.code.String())
			require.Equal(t, tc.hard, tc.code.IsHardError(), "hard")
			require.Equal(t, tc.soft, tc.code.IsSoftError(), "soft")
			require.Equal(t, tc.recoverable, tc.code.Recoverable(), "recoverable")
			require.Equal(t, fmt.Sprintf("amqp: %d %s", tc.num, tc.name), tc.code.Error())
			require.ErrorIs(t, tc.code, tc.code)
		})
	}

	// Every other code is neither hard, soft nor recoverable and has a
	// numeric name.
	known := map[ReplyCode]bool{}
	for _, tc := range specCodes {
		known[tc.code] = true
	}
	for c := ReplyCode(0); c < 1000; c++ {
		if known[c] {
			continue
		}
		require.False(t, c.IsHardError(), "%d", c)
		require.False(t, c.IsSoftError(), "%d", c)
		require.False(t, c.Recoverable(), "%d", c)
		require.Equal(t, fmt.Sprintf("REPLY_%d", uint16(c)), c.String())
	}
	require.Equal(t, "REPLY_65535", ReplyCode(65535).String())

	// The hard and soft sets are exactly the spec's.
	var hard, soft []uint16
	for c := ReplyCode(0); c < 1000; c++ {
		if c.IsHardError() {
			hard = append(hard, uint16(c))
		}
		if c.IsSoftError() {
			soft = append(soft, uint16(c))
		}
	}
	require.Equal(t, []uint16{320, 402, 501, 502, 503, 504, 505, 506, 530, 540, 541}, hard)
	require.Equal(t, []uint16{311, 312, 313, 403, 404, 405, 406}, soft)
}

func TestRecoverableCodeLists(t *testing.T) {
	conn := RecoverableConnectionCodes()
	ch := RecoverableChannelCodes()
	require.Equal(t, []ReplyCode{ConnectionForced, ResourceError}, conn)
	require.Equal(t, []ReplyCode{ContentTooLarge, NoConsumers, ResourceLocked}, ch)
	for _, c := range conn {
		require.True(t, c.Recoverable())
		require.True(t, c.IsHardError(), "connection-level codes are hard")
	}
	for _, c := range ch {
		require.True(t, c.Recoverable())
		require.True(t, c.IsSoftError(), "channel-level codes are soft")
	}
	// The lists are fresh copies.
	conn[0] = NotFound
	require.Equal(t, ConnectionForced, RecoverableConnectionCodes()[0])
	ch[0] = NotFound
	require.Equal(t, ContentTooLarge, RecoverableChannelCodes()[0])

	// And they are all of Recoverable.
	var all []ReplyCode
	for c := ReplyCode(0); c < 1000; c++ {
		if c.Recoverable() {
			all = append(all, c)
		}
	}
	want := append(RecoverableChannelCodes(), RecoverableConnectionCodes()...)
	slices.Sort(want)
	require.Equal(t, want, all)
}

func TestOriginString(t *testing.T) {
	require.Equal(t, "peer", ByPeer.String())
	require.Equal(t, "local", ByLocal.String())
}

func TestConnectionError(t *testing.T) {
	err := &ConnectionError{
		Reply:  Reply{Code: AccessRefused, Text: "ACCESS_REFUSED - Login was refused", ClassID: 10, MethodID: 40},
		Origin: ByPeer,
	}
	require.Equal(t,
		"amqp: connection closed by peer: 403 ACCESS_REFUSED: Login was refused (class 10, method 40)",
		err.Error())
	require.True(t, errors.Is(err, AccessRefused))
	require.False(t, errors.Is(err, NotFound))
	require.False(t, errors.Is(err, io.EOF))
	require.False(t, err.Recoverable())
	require.False(t, IsRecoverable(err))
	require.Equal(t, err.Reply, err.AMQPReply())

	var amqpErr Error = err
	require.Equal(t, AccessRefused, amqpErr.AMQPReply().Code)

	wrapped := fmt.Errorf("dial: %w", fmt.Errorf("handshake: %w", err))
	require.ErrorIs(t, wrapped, AccessRefused)
	require.NotErrorIs(t, wrapped, NotFound)
	var ce *ConnectionError
	require.ErrorAs(t, wrapped, &ce)
	require.Same(t, err, ce)
	var ae Error
	require.ErrorAs(t, wrapped, &ae)
	require.Equal(t, AccessRefused, ae.AMQPReply().Code)
	var he *ChannelError
	require.False(t, errors.As(wrapped, &he))

	forced := &ConnectionError{Reply: Reply{Code: ConnectionForced, Text: "broker forced connection closure with reason 'shutdown'"}, Origin: ByPeer}
	require.True(t, forced.Recoverable())
	require.True(t, IsRecoverable(fmt.Errorf("x: %w", forced)))
	require.Equal(t, "amqp: connection closed by peer: 320 CONNECTION_FORCED: broker forced connection closure with reason 'shutdown'",
		forced.Error(), "no class/method when both are zero")

	local := &ConnectionError{Reply: Reply{Code: FrameError, Text: "bad frame end", ClassID: 60, MethodID: 0}, Origin: ByLocal}
	msg := local.Error()
	for _, part := range []string{"local", "501", "FRAME_ERROR", "bad frame end", "class 60", "method 0"} {
		require.Contains(t, msg, part)
	}
	require.False(t, local.Recoverable())

	noText := &ConnectionError{Reply: Reply{Code: InternalError}}
	require.Equal(t, "amqp: connection closed by peer: 541 INTERNAL_ERROR", noText.Error())
}

func TestChannelError(t *testing.T) {
	err := &ChannelError{
		Reply:   Reply{Code: NotFound, Text: "NOT_FOUND - no queue 'q' in vhost '/'", ClassID: 50, MethodID: 10},
		Channel: 3,
		Origin:  ByPeer,
	}
	require.Equal(t,
		"amqp: channel 3 closed by peer: 404 NOT_FOUND: no queue 'q' in vhost '/' (class 50, method 10)",
		err.Error())
	require.ErrorIs(t, err, NotFound)
	require.NotErrorIs(t, err, AccessRefused)
	require.False(t, IsRecoverable(err))
	wrapped := fmt.Errorf("declare: %w", err)
	require.ErrorIs(t, wrapped, NotFound)
	var he *ChannelError
	require.ErrorAs(t, wrapped, &he)
	require.Equal(t, uint16(3), he.Channel)
	var ce *ConnectionError
	require.False(t, errors.As(wrapped, &ce))
	var ae Error
	require.ErrorAs(t, wrapped, &ae)
	require.Equal(t, NotFound, ae.AMQPReply().Code)

	locked := &ChannelError{Reply: Reply{Code: ResourceLocked}, Channel: 1}
	require.True(t, IsRecoverable(fmt.Errorf("a: %w", fmt.Errorf("b: %w", locked))))

	local := &ChannelError{Reply: Reply{Code: PreconditionFailed, Text: "unknown delivery tag 7", ClassID: 60, MethodID: 80}, Channel: 65535, Origin: ByLocal}
	msg := local.Error()
	for _, part := range []string{"channel 65535", "local", "406", "PRECONDITION_FAILED", "unknown delivery tag 7", "class 60", "method 80"} {
		require.Contains(t, msg, part)
	}
}

func TestChannelErrorConsumerCancel(t *testing.T) {
	err := &ChannelError{Channel: 2, Origin: ByPeer, ConsumerTag: "ctag-1"}
	require.Equal(t, `amqp: consumer "ctag-1" on channel 2 cancelled by peer`, err.Error())
	require.True(t, err.Recoverable(), "consuming again may succeed")
	require.True(t, IsRecoverable(fmt.Errorf("consume: %w", err)))
	for c := ReplyCode(0); c < 1000; c++ {
		require.False(t, errors.Is(err, c), "a consumer cancel is not %d", c)
	}
	require.NotErrorIs(t, err, ReplyCode(0))

	// With a code the tag is not the description.
	coded := &ChannelError{Reply: Reply{Code: NotFound}, Channel: 2, ConsumerTag: "ctag-1"}
	require.True(t, strings.HasPrefix(coded.Error(), "amqp: channel 2 closed by peer: 404 NOT_FOUND"), coded.Error())
	require.ErrorIs(t, coded, NotFound)
	require.False(t, coded.Recoverable())
}

func TestIsRecoverable(t *testing.T) {
	require.False(t, IsRecoverable(nil))
	require.False(t, IsRecoverable(io.EOF))
	require.False(t, IsRecoverable(errors.New("plain")))
	// A bare ReplyCode is an error but not an AMQP close.
	require.False(t, IsRecoverable(ConnectionForced))

	for _, tc := range specCodes {
		ce := &ConnectionError{Reply: Reply{Code: tc.code}}
		he := &ChannelError{Reply: Reply{Code: tc.code}}
		require.Equal(t, tc.recoverable, IsRecoverable(ce), "%v", tc.code)
		require.Equal(t, tc.recoverable, IsRecoverable(fmt.Errorf("w: %w", he)), "%v", tc.code)
		require.ErrorIs(t, ce, tc.code)
		require.ErrorIs(t, he, tc.code)
	}

	// errors.Join: the first AMQP error found decides.
	joined := errors.Join(io.EOF, &ChannelError{Reply: Reply{Code: NoConsumers}})
	require.True(t, IsRecoverable(joined))
	require.ErrorIs(t, joined, NoConsumers)
}
