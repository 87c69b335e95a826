// Package wire holds the big-endian primitives shared by proto and
// proto/frames: a cursor that keeps the first error (so generated parse code
// stays linear) and append helpers for the AMQP domain types.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated reports that a structure ended before its last field. Inside a
// complete frame this is malformed input, not a request for more bytes.
var ErrTruncated = errors.New("truncated")

// Reader is a cursor over b. After the first error every read returns the
// zero value and Err reports that error. Slices it returns alias b.
type Reader struct {
	b   []byte
	off int
	err error // the first error, or errShort until Err builds it
	// What the first failed read wanted (when err is errShort): kept
	// instead of building the error on the spot, so that the read methods
	// make no call on their failure path and stay small enough to inline.
	shortN    int
	shortWhat string
}

// errShort marks a failed read whose error Err has not built yet.
var errShort = errors.New("truncated (pending)")

// NewReader returns a Reader over b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Err returns the first error met, or nil.
func (r *Reader) Err() error {
	if r.err == errShort {
		r.err = fmt.Errorf("%s: need %d bytes, have %d: %w", r.shortWhat, r.shortN, len(r.b)-r.off, ErrTruncated)
	}
	return r.err
}

// Offset returns how many bytes were consumed.
func (r *Reader) Offset() int { return r.off }

// Len returns how many bytes remain.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Rest returns the unread bytes.
func (r *Reader) Rest() []byte { return r.b[r.off:] }

// Fail records err unless an error is already recorded.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// short records a read of n bytes that ran out of input, unless an error
// is already recorded. It is small enough to be inlined.
func (r *Reader) short(n int, what string) {
	if r.err == nil {
		r.err, r.shortN, r.shortWhat = errShort, n, what
	}
}

func (r *Reader) take(n int, what string) []byte {
	off := r.off
	if r.err != nil || n < 0 || len(r.b)-off < n {
		r.short(n, what)
		return nil
	}
	r.off = off + n
	return r.b[off : off+n : off+n]
}

// Octet reads one byte.
func (r *Reader) Octet() uint8 {
	off := r.off
	if r.err != nil || off >= len(r.b) {
		r.short(1, "octet")
		return 0
	}
	r.off = off + 1
	return r.b[off]
}

// Short reads a big-endian uint16.
func (r *Reader) Short() uint16 {
	p := r.take(2, "short")
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

// Long reads a big-endian uint32.
func (r *Reader) Long() uint32 {
	p := r.take(4, "long")
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

// LongLong reads a big-endian uint64.
func (r *Reader) LongLong() uint64 {
	p := r.take(8, "longlong")
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// ShortStr reads a short string (one length octet) and returns a view of it.
func (r *Reader) ShortStr() []byte {
	n := r.Octet()
	if r.err != nil {
		return nil
	}
	return r.take(int(n), "short string")
}

// LongStr reads a long string (four length octets) and returns a view of it.
func (r *Reader) LongStr() []byte {
	n := r.Long()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("long string: declared %d bytes, have %d: %w", n, len(r.b)-r.off, ErrTruncated)
		return nil
	}
	return r.take(int(n), "long string")
}

// Bytes reads n raw bytes.
func (r *Reader) Bytes(n int) []byte { return r.take(n, "bytes") }

// ErrShortStringTooLong reports a short string over 255 bytes.
var ErrShortStringTooLong = errors.New("short string longer than 255 bytes")

// AppendOctet appends v.
func AppendOctet(dst []byte, v uint8) []byte { return append(dst, v) }

// AppendShort appends v big-endian.
func AppendShort(dst []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(dst, v) }

// AppendLong appends v big-endian.
func AppendLong(dst []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(dst, v) }

// AppendLongLong appends v big-endian.
func AppendLongLong(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }

// AppendShortStr appends s with a one-octet length, or fails when s is over
// 255 bytes.
func AppendShortStr(dst []byte, s string) ([]byte, error) {
	if len(s) > 255 {
		return dst, fmt.Errorf("%w (%d bytes)", ErrShortStringTooLong, len(s))
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...), nil
}

// AppendLongStr appends s with a four-octet length.
func AppendLongStr(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// AppendLongBytes appends b with a four-octet length.
func AppendLongBytes(dst []byte, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// PutLong overwrites four bytes at off; used to back-fill length prefixes.
func PutLong(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
