package frames

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/warren-amqp/warren/proto"
)

// FrameType is the first octet of a frame.
type FrameType uint8

// The frame types of AMQP 0-9-1 (spec 4.2.3).
const (
	FrameMethod    FrameType = 1
	FrameHeader    FrameType = 2
	FrameBody      FrameType = 3
	FrameHeartbeat FrameType = 8
)

// String names the frame type.
func (t FrameType) String() string {
	switch t {
	case FrameMethod:
		return "method"
	case FrameHeader:
		return "content-header"
	case FrameBody:
		return "body"
	case FrameHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("frame-type-%d", uint8(t))
}

// Frame layout constants.
const (
	FrameHeaderSize = 7    // type octet, channel short, size long
	FrameEndOctet   = 0xCE // the octet closing every frame
	FrameOverhead   = 8    // header plus end octet
	FrameMinSize    = 4096 // the spec's frame-min-size: every peer accepts frames this large
)

// ProtocolHeader is what a 0-9-1 client sends first.
const ProtocolHeader = "AMQP\x00\x00\x09\x01"

// Sentinel errors, matched with errors.Is. Decoding failures are *Error
// values that wrap one of them.
var (
	ErrFrameTooLarge     = errors.New("frame larger than frame_max")
	ErrBadFrameEnd       = errors.New("frame does not end with 0xCE")
	ErrUnknownFrameType  = errors.New("unknown frame type")
	ErrBadHeartbeat      = errors.New("malformed heartbeat frame")
	ErrUnknownClass      = errors.New("unknown class")
	ErrUnknownMethod     = errors.New("unknown method")
	ErrMalformedMethod   = errors.New("malformed method arguments")
	ErrMalformedHeader   = errors.New("malformed content header")
	ErrProtocolMismatch  = errors.New("server does not speak AMQP 0-9-1")
	ErrBadProtocolHeader = errors.New("not an AMQP protocol header")
)

// Error is a decoding failure: what was wrong, where, and the reply code
// a peer should close the connection with.
type Error struct {
	Code     proto.ReplyCode // e.g. FrameError for a bad frame end
	Channel  uint16          // channel of the frame, when known
	ClassID  uint16          // method being decoded, when known
	MethodID uint16
	Err      error // one of the sentinel errors, possibly wrapping more detail
}

// Error describes the failure.
func (e *Error) Error() string {
	s := fmt.Sprintf("amqp frame error (%d %s) on channel %d", uint16(e.Code), e.Code, e.Channel)
	if e.ClassID != 0 || e.MethodID != 0 {
		s += fmt.Sprintf(" in %s", MethodKey(uint32(e.ClassID)<<16|uint32(e.MethodID)))
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying sentinel error.
func (e *Error) Unwrap() error { return e.Err }

func frameErr(code proto.ReplyCode, ch uint16, sentinel error, format string, a ...any) *Error {
	err := sentinel
	if format != "" {
		err = fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, a...))
	}
	return &Error{Code: code, Channel: ch, Err: err}
}

// Frame is one frame split off a buffer. Payload aliases that buffer.
type Frame struct {
	Type    FrameType
	Channel uint16
	Payload []byte
}

// ReadFrame splits the frame at the front of b. It returns the frame and
// the number of bytes it spans. When b holds only part of a frame it
// returns n == 0 and a nil error: read more and call again. maxFrameSize is
// the negotiated frame_max (the largest whole frame, header and end octet
// included); a frame declaring more is refused as soon as its header is
// visible, before its payload arrives. Zero means no limit.
//
// The returned Payload aliases b and is valid until b is overwritten.
func ReadFrame(b []byte, maxFrameSize uint32) (f Frame, n int, err error) {
	if len(b) < FrameHeaderSize {
		if len(b) > 0 && b[0] == 'A' {
			return Frame{}, 0, checkProtocolHeaderPrefix(b)
		}
		return Frame{}, 0, nil
	}
	f.Type = FrameType(b[0])
	f.Channel = binary.BigEndian.Uint16(b[1:3])
	size := binary.BigEndian.Uint32(b[3:7])
	switch f.Type {
	case FrameMethod, FrameHeader, FrameBody:
	case FrameHeartbeat:
		if f.Channel != 0 || size != 0 {
			return Frame{}, 0, frameErr(proto.FrameError, f.Channel, ErrBadHeartbeat, "channel %d, payload %d bytes (want channel 0, no payload)", f.Channel, size)
		}
	default:
		if b[0] == 'A' {
			return Frame{}, 0, checkProtocolHeaderPrefix(b)
		}
		return Frame{}, 0, frameErr(proto.FrameError, f.Channel, ErrUnknownFrameType, "type %d", b[0])
	}
	if maxFrameSize != 0 && uint64(size)+FrameOverhead > uint64(maxFrameSize) {
		return Frame{}, 0, frameErr(proto.FrameError, f.Channel, ErrFrameTooLarge, "%s frame of %d bytes, frame_max %d", f.Type, uint64(size)+FrameOverhead, maxFrameSize)
	}
	total := uint64(size) + FrameOverhead
	if uint64(len(b)) < total {
		return Frame{}, 0, nil
	}
	if b[total-1] != FrameEndOctet {
		return Frame{}, 0, frameErr(proto.FrameError, f.Channel, ErrBadFrameEnd, "got 0x%02x after a %d-byte %s frame", b[total-1], size, f.Type)
	}
	f.Payload = b[FrameHeaderSize : total-1 : total-1]
	return f, int(total), nil
}

// checkProtocolHeaderPrefix is called when a frame starts with 'A', which
// is no frame type: a server that refuses our protocol version answers with
// its own protocol header and closes. It returns nil while b may still be
// the start of one.
func checkProtocolHeaderPrefix(b []byte) error {
	n := min(len(b), 4)
	if string(b[:n]) != "AMQP"[:n] {
		return frameErr(proto.FrameError, 0, ErrUnknownFrameType, "type %d", b[0])
	}
	if len(b) < 8 {
		return nil
	}
	return frameErr(proto.FrameError, 0, ErrProtocolMismatch, "server offered protocol %d-%d-%d", b[5], b[6], b[7])
}

// ParseProtocolHeader decodes an 8-byte protocol header ("AMQP" 0 major
// minor revision) such as a server sends when it refuses our version.
func ParseProtocolHeader(b []byte) (major, minor, revision uint8, err error) {
	if len(b) < 8 || string(b[:4]) != "AMQP" {
		return 0, 0, 0, ErrBadProtocolHeader
	}
	return b[5], b[6], b[7], nil
}

// AppendHeartbeat appends a heartbeat frame.
func AppendHeartbeat(dst []byte) []byte {
	return append(dst, byte(FrameHeartbeat), 0, 0, 0, 0, 0, 0, FrameEndOctet)
}

// appendFrameStart appends a frame header with a zero size and returns the
// offset of the size field for finishFrame.
func appendFrameStart(dst []byte, t FrameType, ch uint16) ([]byte, int) {
	dst = append(dst, byte(t), byte(ch>>8), byte(ch), 0, 0, 0, 0)
	return dst, len(dst) - 4
}

// finishFrame back-fills the size and appends the end octet.
func finishFrame(dst []byte, sizeAt int) []byte {
	binary.BigEndian.PutUint32(dst[sizeAt:], uint32(len(dst)-sizeAt-4))
	return append(dst, FrameEndOctet)
}
