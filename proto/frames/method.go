package frames

import (
	"fmt"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/internal/wire"
)

// MethodKey identifies a method: its class id in the high 16 bits, its
// method id in the low 16.
type MethodKey uint32

// Key returns the MethodKey for a class and method id.
func Key(classID, methodID uint16) MethodKey {
	return MethodKey(uint32(classID)<<16 | uint32(methodID))
}

// ClassID returns the class id.
func (k MethodKey) ClassID() uint16 { return uint16(k >> 16) }

// MethodID returns the method id.
func (k MethodKey) MethodID() uint16 { return uint16(k) }

func (k MethodKey) unknownString() string {
	return fmt.Sprintf("method %d.%d", k.ClassID(), k.MethodID())
}

// Method is implemented by the generated struct of every AMQP method
// (BasicPublish, QueueDeclare, …). Only this package implements it.
type Method interface {
	// Key identifies the method.
	Key() MethodKey
	// ExpectsReply reports whether the peer will answer with one of
	// Replies(Key()); false for asynchronous methods and for synchronous
	// ones sent with NoWait.
	ExpectsReply() bool

	appendArgs(dst []byte) ([]byte, error)
	parseArgs(r *wire.Reader, in *Interner)
}

// Interner turns short byte strings that repeat (exchange names, routing
// keys, consumer tags, content types) into shared Go strings, so decoding
// them does not allocate once they have been seen. It is bounded: when full
// it forgets everything and starts again. The zero value is ready to use
// and not safe for concurrent use; a nil *Interner allocates every string.
type Interner struct {
	m      map[string]string
	recent [4]string // the last strings returned: most frames repeat them, and comparing is cheaper than hashing
	next   uint8
}

// Interner bounds: strings longer than internMaxLen are never kept, and the
// table is cleared when it holds internMaxEntries.
const (
	internMaxLen     = 128
	internMaxEntries = 1024
)

// String returns b as a string, from the table when it is there.
func (in *Interner) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil || len(b) > internMaxLen {
		return string(b)
	}
	for _, s := range &in.recent {
		if string(b) == s { // no allocation: a comparison
			return s
		}
	}
	s, ok := in.m[string(b)] // no allocation: the compiler recognises m[string(b)]
	if !ok {
		s = in.add(b)
	}
	in.recent[in.next%uint8(len(in.recent))] = s
	in.next++
	return s
}

func (in *Interner) add(b []byte) string {
	if in.m == nil || len(in.m) >= internMaxEntries {
		in.m = make(map[string]string, 64)
	}
	s := string(b)
	in.m[s] = s
	return s
}

// Parser decodes method payloads. The methods a broker sends in streams
// (deliveries, confirms, returns, basic.get answers, consumer cancels,
// channel.flow) are decoded into structs it reuses, so that steady-state
// decoding does not allocate; the others, which come once in a while, into
// new ones, so that a quiet connection does not keep a struct for every
// method. The zero value is ready to use. A Parser is not safe for
// concurrent use.
type Parser struct {
	hot     *hotMethods // made on the first streamed method
	r       wire.Reader // reused: a Reader passed to parseArgs, an interface method, escapes to the heap
	Strings Interner    // interns the short strings of decoded methods
}

// hotMethods holds the structs Parser reuses.
type hotMethods struct {
	deliver  BasicDeliver
	ack      BasicAck
	nack     BasicNack
	ret      BasicReturn
	getOK    BasicGetOK
	getEmpty BasicGetEmpty
	cancel   BasicCancel
	flow     ChannelFlow
}

// method returns the struct to decode method k into.
func (p *Parser) method(k MethodKey) Method {
	switch k {
	case MethodBasicDeliver, MethodBasicAck, MethodBasicNack, MethodBasicReturn,
		MethodBasicGetOK, MethodBasicGetEmpty, MethodBasicCancel, MethodChannelFlow:
	default:
		return NewMethod(k)
	}
	if p.hot == nil {
		p.hot = new(hotMethods)
	}
	h := p.hot
	switch k {
	case MethodBasicDeliver:
		h.deliver = BasicDeliver{}
		return &h.deliver
	case MethodBasicAck:
		h.ack = BasicAck{}
		return &h.ack
	case MethodBasicNack:
		h.nack = BasicNack{}
		return &h.nack
	case MethodBasicReturn:
		h.ret = BasicReturn{}
		return &h.ret
	case MethodBasicGetOK:
		h.getOK = BasicGetOK{}
		return &h.getOK
	case MethodBasicGetEmpty:
		h.getEmpty = BasicGetEmpty{}
		return &h.getEmpty
	case MethodBasicCancel:
		h.cancel = BasicCancel{}
		return &h.cancel
	default:
		h.flow = ChannelFlow{}
		return &h.flow
	}
}

// ParseMethod decodes a method frame's payload. The returned Method points
// into p and is valid until the next ParseMethod call; its strings and
// tables are owned values that stay valid. ch is used only to label errors.
func (p *Parser) ParseMethod(ch uint16, payload []byte) (Method, error) {
	p.r = wire.NewReader(payload)
	m, err := parseMethod(ch, &p.r, p.method, &p.Strings)
	p.r = wire.Reader{} // do not keep the caller's buffer reachable
	return m, err
}

// DecodeMethod decodes a method frame's payload into a new struct.
func DecodeMethod(ch uint16, payload []byte) (Method, error) {
	r := wire.NewReader(payload)
	return parseMethod(ch, &r, NewMethod, nil)
}

func parseMethod(ch uint16, r *wire.Reader, get func(MethodKey) Method, in *Interner) (Method, error) {
	size := r.Len()
	classID, methodID := r.Short(), r.Short()
	if r.Err() != nil {
		return nil, frameErr(proto.FrameError, ch, ErrMalformedMethod, "method frame of %d bytes is too short for class and method ids", size)
	}
	k := Key(classID, methodID)
	m := get(k)
	if m == nil {
		if !KnownClass(classID) {
			e := frameErr(proto.NotImplemented, ch, ErrUnknownClass, "class %d", classID)
			e.ClassID, e.MethodID = classID, methodID
			return nil, e
		}
		e := frameErr(proto.CommandInvalid, ch, ErrUnknownMethod, "method %d of class %d", methodID, classID)
		e.ClassID, e.MethodID = classID, methodID
		return nil, e
	}
	m.parseArgs(r, in)
	err := r.Err()
	if err == nil && r.Len() != 0 {
		err = fmt.Errorf("%d bytes after the last argument", r.Len())
	}
	if err != nil {
		e := frameErr(proto.SyntaxError, ch, ErrMalformedMethod, "%s: %v", k, err)
		e.ClassID, e.MethodID = classID, methodID
		return nil, e
	}
	return m, nil
}

// AppendMethod appends a method frame for m on channel ch. It fails, leaving
// dst unchanged, when a short string is over 255 bytes or a table cannot be
// encoded.
func AppendMethod(dst []byte, ch uint16, m Method) ([]byte, error) {
	start := len(dst)
	dst, sizeAt := appendFrameStart(dst, FrameMethod, ch)
	k := m.Key()
	dst = wire.AppendShort(dst, k.ClassID())
	dst = wire.AppendShort(dst, k.MethodID())
	dst, err := m.appendArgs(dst)
	if err != nil {
		return dst[:start], fmt.Errorf("amqp: encoding %s: %w", k, err)
	}
	return finishFrame(dst, sizeAt), nil
}

// AppendMethodArgs appends only m's class id, method id and arguments: a
// method frame's payload.
func AppendMethodArgs(dst []byte, m Method) ([]byte, error) {
	start := len(dst)
	k := m.Key()
	dst = wire.AppendShort(dst, k.ClassID())
	dst = wire.AppendShort(dst, k.MethodID())
	dst, err := m.appendArgs(dst)
	if err != nil {
		return dst[:start], fmt.Errorf("amqp: encoding %s: %w", k, err)
	}
	return dst, nil
}

func appendShortStr(dst []byte, field, s string) ([]byte, error) {
	out, err := wire.AppendShortStr(dst, s)
	if err != nil {
		return dst, fmt.Errorf("field %s: %w", field, err)
	}
	return out, nil
}

func appendTable(dst []byte, field string, t proto.Table) ([]byte, error) {
	out, err := proto.AppendTable(dst, t)
	if err != nil {
		return dst, fmt.Errorf("field %s: %w", field, err)
	}
	return out, nil
}

func readTable(r *wire.Reader, field string) proto.Table {
	body := r.LongStr()
	if r.Err() != nil {
		return nil
	}
	t, err := proto.DecodeTableFields(body)
	if err != nil {
		r.Fail(fmt.Errorf("field %s: %w", field, err))
	}
	return t
}
