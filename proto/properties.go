package proto

import (
	"errors"
	"fmt"
	"time"

	"github.com/warren-amqp/warren/proto/internal/wire"
)

// PropertyFlags is the property-flags word of a basic content header: bit
// 15 is content-type, bit 14 content-encoding, … bit 2 cluster-id. Bit 0
// announces another flags word (which, for class basic, must be zero).
type PropertyFlags uint16

// The basic-class property flags, in wire order.
const (
	FlagContentType     PropertyFlags = 1 << 15
	FlagContentEncoding PropertyFlags = 1 << 14
	FlagHeaders         PropertyFlags = 1 << 13
	FlagDeliveryMode    PropertyFlags = 1 << 12
	FlagPriority        PropertyFlags = 1 << 11
	FlagCorrelationID   PropertyFlags = 1 << 10
	FlagReplyTo         PropertyFlags = 1 << 9
	FlagExpiration      PropertyFlags = 1 << 8
	FlagMessageID       PropertyFlags = 1 << 7
	FlagTimestamp       PropertyFlags = 1 << 6
	FlagType            PropertyFlags = 1 << 5
	FlagUserID          PropertyFlags = 1 << 4
	FlagAppID           PropertyFlags = 1 << 3
	FlagClusterID       PropertyFlags = 1 << 2

	// AllPropertyFlags is the union of the fourteen property flags.
	AllPropertyFlags PropertyFlags = 0xFFFC
	flagContinuation PropertyFlags = 1
)

// Delivery modes for Properties.DeliveryMode.
const (
	Transient  uint8 = 1 // the broker may keep the message in memory only
	Persistent uint8 = 2 // the broker writes the message to disk on durable queues
)

// ErrMalformedProperties reports a content header property list that cannot
// be decoded.
var ErrMalformedProperties = errors.New("amqp: malformed content properties")

// Properties are the fourteen basic-class message properties, as Go
// values that own their memory. A zero field is not sent, unless its flag
// is in Flags.
type Properties struct {
	ContentType     string    // MIME type of the body, e.g. "application/json"
	ContentEncoding string    // MIME content encoding, e.g. "gzip"
	Headers         Table     // application headers
	DeliveryMode    uint8     // Transient (1) or Persistent (2)
	Priority        uint8     // 0 to 9
	CorrelationID   string    // application correlation identifier
	ReplyTo         string    // address to reply to
	Expiration      string    // per-message TTL in milliseconds, as text
	MessageID       string    // application message identifier
	Timestamp       time.Time // message timestamp, whole seconds
	Type            string    // message type name
	UserID          string    // creating user (RabbitMQ checks it against the login)
	AppID           string    // creating application
	ClusterID       string    // deprecated in 0-9-1; carried as is

	// Flags forces properties to be sent even when their value is the
	// zero value (an empty content-type, priority 0, …). Decoding sets it to
	// exactly the properties present on the wire, so a decoded header
	// re-encodes to the same bytes.
	Flags PropertyFlags
}

// PresentFlags returns the flags word Append writes: every non-zero
// property plus Flags.
func (p *Properties) PresentFlags() PropertyFlags {
	f := p.Flags & AllPropertyFlags
	set := func(cond bool, flag PropertyFlags) {
		if cond {
			f |= flag
		}
	}
	set(p.ContentType != "", FlagContentType)
	set(p.ContentEncoding != "", FlagContentEncoding)
	set(len(p.Headers) > 0, FlagHeaders)
	set(p.DeliveryMode != 0, FlagDeliveryMode)
	set(p.Priority != 0, FlagPriority)
	set(p.CorrelationID != "", FlagCorrelationID)
	set(p.ReplyTo != "", FlagReplyTo)
	set(p.Expiration != "", FlagExpiration)
	set(p.MessageID != "", FlagMessageID)
	set(!p.Timestamp.IsZero(), FlagTimestamp)
	set(p.Type != "", FlagType)
	set(p.UserID != "", FlagUserID)
	set(p.AppID != "", FlagAppID)
	set(p.ClusterID != "", FlagClusterID)
	return f
}

// Append appends the property flags word and the property list. It fails
// when a short-string property is over 255 bytes or the headers cannot be
// encoded; dst is then returned unchanged.
func (p *Properties) Append(dst []byte) ([]byte, error) {
	start := len(dst)
	f := p.PresentFlags()
	dst = wire.AppendShort(dst, uint16(f))
	var err error
	str := func(flag PropertyFlags, name, s string) {
		if err == nil && f&flag != 0 {
			if dst, err = wire.AppendShortStr(dst, s); err != nil {
				err = fmt.Errorf("amqp: property %s: %w", name, err)
			}
		}
	}
	str(FlagContentType, "content-type", p.ContentType)
	str(FlagContentEncoding, "content-encoding", p.ContentEncoding)
	if err == nil && f&FlagHeaders != 0 {
		if dst, err = AppendTable(dst, p.Headers); err != nil {
			err = fmt.Errorf("amqp: property headers: %w", err)
		}
	}
	if f&FlagDeliveryMode != 0 {
		dst = append(dst, p.DeliveryMode)
	}
	if f&FlagPriority != 0 {
		dst = append(dst, p.Priority)
	}
	str(FlagCorrelationID, "correlation-id", p.CorrelationID)
	str(FlagReplyTo, "reply-to", p.ReplyTo)
	str(FlagExpiration, "expiration", p.Expiration)
	str(FlagMessageID, "message-id", p.MessageID)
	if f&FlagTimestamp != 0 {
		var sec uint64
		if !p.Timestamp.IsZero() {
			sec = uint64(p.Timestamp.Unix()) // wraps back to the decoded value
		}
		dst = wire.AppendLongLong(dst, sec)
	}
	str(FlagType, "type", p.Type)
	str(FlagUserID, "user-id", p.UserID)
	str(FlagAppID, "app-id", p.AppID)
	str(FlagClusterID, "cluster-id", p.ClusterID)
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// RawTable is an encoded field table body (without its length prefix),
// kept undecoded until someone asks for it. It aliases the buffer it was
// parsed from; see the owner's documentation for how long that stays valid.
type RawTable []byte

// Decode decodes the table into owned Go values.
func (t RawTable) Decode() (Table, error) { return DecodeTableFields(t) }

// PropertiesView is a zero-copy decoding of a property list: its byte
// slices alias the buffer it was parsed from and are valid only as long as
// that buffer is (for a frame parsed by proto/frames, until the next parse
// call on the same buffer). Call Properties for an owned copy.
type PropertiesView struct {
	Flags           PropertyFlags
	ContentType     []byte
	ContentEncoding []byte
	Headers         RawTable
	DeliveryMode    uint8
	Priority        uint8
	CorrelationID   []byte
	ReplyTo         []byte
	Expiration      []byte
	MessageID       []byte
	Timestamp       uint64 // seconds since the Unix epoch
	Type            []byte
	UserID          []byte
	AppID           []byte
	ClusterID       []byte
}

// Parse decodes a property flags word and property list filling all of b.
// It accepts continuation flag words as long as they announce no property
// (class basic has only fourteen) and rejects trailing bytes.
func (v *PropertiesView) Parse(b []byte) error {
	*v = PropertiesView{}
	r := wire.NewReader(b)
	f := PropertyFlags(r.Short())
	if r.Err() != nil {
		return fmt.Errorf("%w: flags: %v", ErrMalformedProperties, r.Err())
	}
	if f&0x0002 != 0 {
		return fmt.Errorf("%w: flags 0x%04x set bit 1, which names no property", ErrMalformedProperties, uint16(f))
	}
	for more := f&flagContinuation != 0; more; {
		w := r.Short()
		if r.Err() != nil {
			return fmt.Errorf("%w: continuation flags: %v", ErrMalformedProperties, r.Err())
		}
		if w&^1 != 0 {
			return fmt.Errorf("%w: continuation flags 0x%04x name properties class basic does not have", ErrMalformedProperties, w)
		}
		more = w&1 != 0
	}
	f &= AllPropertyFlags
	v.Flags = f
	str := func(flag PropertyFlags) []byte {
		if f&flag == 0 {
			return nil
		}
		return r.ShortStr()
	}
	v.ContentType = str(FlagContentType)
	v.ContentEncoding = str(FlagContentEncoding)
	if f&FlagHeaders != 0 {
		v.Headers = r.LongStr()
	}
	if f&FlagDeliveryMode != 0 {
		v.DeliveryMode = r.Octet()
	}
	if f&FlagPriority != 0 {
		v.Priority = r.Octet()
	}
	v.CorrelationID = str(FlagCorrelationID)
	v.ReplyTo = str(FlagReplyTo)
	v.Expiration = str(FlagExpiration)
	v.MessageID = str(FlagMessageID)
	if f&FlagTimestamp != 0 {
		v.Timestamp = r.LongLong()
	}
	v.Type = str(FlagType)
	v.UserID = str(FlagUserID)
	v.AppID = str(FlagAppID)
	v.ClusterID = str(FlagClusterID)
	if err := r.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedProperties, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the last property", ErrMalformedProperties, r.Len())
	}
	return nil
}

// Properties returns an owned copy of the view, decoding the headers.
func (v *PropertiesView) Properties() (Properties, error) {
	return v.PropertiesWith(func(b []byte) string { return string(b) })
}

// PropertiesWith is Properties with the strings that usually repeat from
// message to message (content-type, content-encoding, expiration, type,
// user-id, app-id and cluster-id) made by intern, for example a bounded
// string table, so that converting them does not allocate each time.
// Message-id, correlation-id and reply-to are copied as they come.
func (v *PropertiesView) PropertiesWith(intern func([]byte) string) (Properties, error) {
	p := Properties{
		ContentType:     intern(v.ContentType),
		ContentEncoding: intern(v.ContentEncoding),
		DeliveryMode:    v.DeliveryMode,
		Priority:        v.Priority,
		CorrelationID:   string(v.CorrelationID),
		ReplyTo:         string(v.ReplyTo),
		Expiration:      intern(v.Expiration),
		MessageID:       string(v.MessageID),
		Type:            intern(v.Type),
		UserID:          intern(v.UserID),
		AppID:           intern(v.AppID),
		ClusterID:       intern(v.ClusterID),
		Flags:           v.Flags,
	}
	if v.Flags&FlagTimestamp != 0 {
		p.Timestamp = time.Unix(int64(v.Timestamp), 0).UTC()
		if p.Timestamp.IsZero() {
			// The one wire value that lands on Go's zero time (year 1):
			// a nanosecond keeps it from reading as "unset", so it
			// re-encodes to the same seconds.
			p.Timestamp = time.Unix(int64(v.Timestamp), 1).UTC()
		}
	}
	if v.Flags&FlagHeaders != 0 {
		t, err := v.Headers.Decode()
		if err != nil {
			return Properties{}, fmt.Errorf("%w: headers: %w", ErrMalformedProperties, err)
		}
		p.Headers = t
	}
	return p, nil
}

// ParseProperties decodes a property list filling all of b into owned values.
func ParseProperties(b []byte) (Properties, error) {
	var v PropertiesView
	if err := v.Parse(b); err != nil {
		return Properties{}, err
	}
	return v.Properties()
}
