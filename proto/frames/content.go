package frames

import (
	"fmt"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/internal/wire"
)

// ContentHeader is a decoded content-header frame payload. Its Properties
// are a zero-copy view: they alias the payload given to Parse and are valid
// as long as that buffer is.
type ContentHeader struct {
	ClassID    uint16 // class of the method the content belongs to (basic: 60)
	Weight     uint16 // unused by 0-9-1; zero on the wire
	BodySize   uint64 // total size of the body frames that follow
	Properties proto.PropertiesView
}

// Parse decodes a content-header frame payload into h. ch only labels
// errors.
func (h *ContentHeader) Parse(ch uint16, payload []byte) error {
	r := wire.NewReader(payload)
	h.ClassID = r.Short()
	h.Weight = r.Short()
	h.BodySize = r.LongLong()
	if err := r.Err(); err != nil {
		return frameErr(proto.FrameError, ch, ErrMalformedHeader, "%v", err)
	}
	if h.ClassID != ClassBasic {
		e := frameErr(proto.FrameError, ch, ErrMalformedHeader, "content of class %d (only basic carries content)", h.ClassID)
		return e
	}
	if err := h.Properties.Parse(r.Rest()); err != nil {
		return frameErr(proto.FrameError, ch, ErrMalformedHeader, "%v", err)
	}
	return nil
}

// AppendContentHeader appends a content-header frame for class basic with
// the given body size and properties. It fails, leaving dst unchanged, when
// a property cannot be encoded.
func AppendContentHeader(dst []byte, ch uint16, bodySize uint64, p *proto.Properties) ([]byte, error) {
	start := len(dst)
	dst, sizeAt := appendFrameStart(dst, FrameHeader, ch)
	dst = wire.AppendShort(dst, ClassBasic)
	dst = wire.AppendShort(dst, 0)
	dst = wire.AppendLongLong(dst, bodySize)
	var err error
	if p == nil {
		dst = wire.AppendShort(dst, 0)
	} else if dst, err = p.Append(dst); err != nil {
		return dst[:start], err
	}
	return finishFrame(dst, sizeAt), nil
}

// MaxBodyFrameSize returns the largest body payload that fits a frame
// under maxFrameSize (frame_max minus the 8 bytes of framing); zero
// maxFrameSize means no limit, and then bodies go in one frame.
func MaxBodyFrameSize(maxFrameSize uint32) int {
	if maxFrameSize == 0 {
		return int(^uint32(0) >> 1)
	}
	if maxFrameSize <= FrameOverhead {
		return 1
	}
	return int(maxFrameSize - FrameOverhead)
}

// AppendBody appends body as body frames of at most maxFrameSize bytes each
// (framing included). An empty body appends nothing: a content header with
// body size 0 is followed by no body frame.
func AppendBody(dst []byte, ch uint16, body []byte, maxFrameSize uint32) []byte {
	chunk := MaxBodyFrameSize(maxFrameSize)
	for len(body) > 0 {
		n := min(len(body), chunk)
		var sizeAt int
		dst, sizeAt = appendFrameStart(dst, FrameBody, ch)
		dst = append(dst, body[:n]...)
		dst = finishFrame(dst, sizeAt)
		body = body[n:]
	}
	return dst
}

// AppendMessage appends a content-carrying method (basic.publish, or
// deliver, return and get-ok for a server) with its content header and
// body frames. It fails, leaving dst unchanged, if m carries no content or
// anything cannot be encoded.
func AppendMessage(dst []byte, ch uint16, m Method, p *proto.Properties, body []byte, maxFrameSize uint32) ([]byte, error) {
	if !m.Key().HasContent() {
		return dst, fmt.Errorf("amqp: %s carries no content", m.Key())
	}
	start := len(dst)
	dst, err := AppendMethod(dst, ch, m)
	if err != nil {
		return dst, err
	}
	if dst, err = AppendContentHeader(dst, ch, uint64(len(body)), p); err != nil {
		return dst[:start], err
	}
	return AppendBody(dst, ch, body, maxFrameSize), nil
}
