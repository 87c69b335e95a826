package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// frameMaxes are the frame_max values FuzzFrameReader reads with: the
// spec's frame-min-size, which every peer must accept, and no limit.
var frameMaxes = []uint32{frames.FrameMinSize, 0}

// FuzzFrameReader splits arbitrary bytes into frames and decodes the method
// and content-header frames, checking that nothing panics, that every error
// is a *frames.Error with a reply code, that no frame exceeds frame_max, and
// that feeding the input in two pieces gives what feeding it whole gives.
func FuzzFrameReader(f *testing.F) {
	s := newSeeds(f)
	for _, b := range handMadeStreams() {
		s.add(b)
	}
	for _, b := range recordedStreams(f) {
		s.add(b)
	}
	for _, b := range recordedWindows(f) {
		s.add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, frameMax := range frameMaxes {
			whole := readStream(t, frameMax, len(data), data)
			at := splitIndex(data)
			split := readStream(t, frameMax, len(data), data[:at], data[at:])
			equal(t, whole, split, "frame_max %d: the input whole and split at %d read differently", frameMax, at)
		}
	})
}

// streamResult is what reading a stream produced, for comparing two ways of
// feeding the same bytes.
type streamResult struct {
	Frames   []frameRecord
	Err      string // the ReadFrame error that ended the stream, "" if none
	Consumed int    // bytes taken by complete frames
	Pending  int    // bytes of an incomplete frame left at the end (0 after an error)
}

// frameRecord is one frame read and what decoding its payload gave.
type frameRecord struct {
	Type    frames.FrameType
	Channel uint16
	Size    int    // payload length
	CRC     uint32 // payload checksum (a copy would cost more for large bodies)
	Decoded string // the method or header, re-encoded, or the decoding error
}

// splitIndex derives a split point in [0, len(data)] from the input.
func splitIndex(data []byte) int {
	return int(crc32.ChecksumIEEE(data) % uint32(len(data)+1))
}

// readStream feeds chunks, one after the other, into an accumulation
// buffer and splits complete frames off its front, as a connection's read
// loop does: decode what is complete, keep the rest at the front of the
// buffer, read more after it. total is the length of the whole input.
func readStream(t *testing.T, frameMax uint32, total int, chunks ...[]byte) streamResult {
	var (
		res streamResult
		acc []byte // unconsumed bytes start at off
		off int
		fed int
		p   frames.Parser
	)
	for _, c := range chunks {
		// Compact before reading more: the payload views of the frames
		// split off so far die here, so anything kept from them must
		// already be a copy.
		acc = append(acc[:0], acc[off:]...)
		off = 0
		acc = append(acc, c...)
		fed += len(c)
		isTrue(t, len(acc) <= total, "the accumulation buffer outgrew the input")
		equal(t, fed, res.Consumed+len(acc), "bytes lost or counted twice")
		for {
			rest := acc[off:]
			fr, n, err := frames.ReadFrame(rest, frameMax)
			if err != nil {
				isTrue(t, n == 0, "ReadFrame consumed bytes and failed")
				requireReadFrameError(t, err, frameMax)
				res.Err = err.Error()
				return res
			}
			if n == 0 {
				break
			}
			isTrue(t, n <= len(rest), "ReadFrame consumed more than the buffer")
			equal(t, frames.FrameOverhead+len(fr.Payload), n, "frame length is not payload + 8")
			if frameMax != 0 {
				isTrue(t, len(fr.Payload) <= int(frameMax)-frames.FrameOverhead,
					"a %d-byte payload got past frame_max %d", len(fr.Payload), frameMax)
			}
			res.Frames = append(res.Frames, checkFrame(t, &p, fr))
			res.Consumed += n
			off += n
		}
	}
	res.Pending = len(acc) - off
	return res
}

// checkFrame checks and decodes one frame.
func checkFrame(t *testing.T, p *frames.Parser, fr frames.Frame) frameRecord {
	rec := frameRecord{Type: fr.Type, Channel: fr.Channel, Size: len(fr.Payload), CRC: crc32.ChecksumIEEE(fr.Payload)}
	switch fr.Type {
	case frames.FrameHeartbeat:
		isTrue(t, fr.Channel == 0, "heartbeat on a channel")
		isTrue(t, len(fr.Payload) == 0, "heartbeat with a payload")
	case frames.FrameMethod:
		rec.Decoded = checkMethodPayload(t, p, fr.Channel, fr.Payload)
	case frames.FrameHeader:
		rec.Decoded = checkHeaderPayload(t, fr.Channel, fr.Payload)
	case frames.FrameBody:
	default:
		t.Fatalf("ReadFrame returned a frame of type %d", fr.Type)
	}
	return rec
}

// requireFrameError requires err to be a *frames.Error with a reply code.
func requireFrameError(t *testing.T, err error) *frames.Error {
	var fe *frames.Error
	isTrue(t, errors.As(err, &fe), "error %q is a %T, not a *frames.Error", err, err)
	isTrue(t, fe.Code != 0, "error %q has no reply code", err)
	return fe
}

// requireReadFrameError checks an error from ReadFrame.
func requireReadFrameError(t *testing.T, err error, frameMax uint32) {
	fe := requireFrameError(t, err)
	equal(t, proto.FrameError, fe.Code, "ReadFrame error %q", err)
	switch {
	case errors.Is(err, frames.ErrFrameTooLarge):
		isTrue(t, frameMax != 0, "frame too large without a frame_max")
	case errors.Is(err, frames.ErrBadFrameEnd),
		errors.Is(err, frames.ErrUnknownFrameType),
		errors.Is(err, frames.ErrBadHeartbeat),
		errors.Is(err, frames.ErrProtocolMismatch):
	default:
		t.Fatalf("ReadFrame error %q wraps none of its sentinels", err)
	}
}

// requireTableError requires err to be a table decoding failure.
func requireTableError(t *testing.T, err error) {
	isTrue(t, errors.Is(err, proto.ErrMalformedTable) || errors.Is(err, proto.ErrTooDeep),
		"table error %q wraps neither ErrMalformedTable nor ErrTooDeep", err)
}

// checkMethodPayload decodes a method payload with p and with DecodeMethod,
// requires that they agree, that errors are well-formed and that a decoded
// method round-trips, and describes the outcome.
func checkMethodPayload(t *testing.T, p *frames.Parser, ch uint16, payload []byte) string {
	parsed, perr := p.ParseMethod(ch, payload)
	decoded, derr := frames.DecodeMethod(ch, payload)
	if derr != nil {
		isTrue(t, perr != nil, "Parser accepted what DecodeMethod refused (%v)", derr)
		equal(t, derr.Error(), perr.Error(), "Parser and DecodeMethod fail differently")
		fe := requireFrameError(t, derr)
		equal(t, ch, fe.Channel, "error labels the wrong channel")
		if len(payload) < 4 {
			errorIs(t, derr, frames.ErrMalformedMethod)
			equal(t, proto.FrameError, fe.Code)
			return "error: " + derr.Error()
		}
		class, method := binary.BigEndian.Uint16(payload), binary.BigEndian.Uint16(payload[2:])
		equal(t, class, fe.ClassID)
		equal(t, method, fe.MethodID)
		switch {
		case errors.Is(derr, frames.ErrUnknownClass):
			isTrue(t, !frames.KnownClass(class))
			equal(t, proto.NotImplemented, fe.Code)
		case errors.Is(derr, frames.ErrUnknownMethod):
			isTrue(t, frames.KnownClass(class))
			isTrue(t, !frames.Key(class, method).Known())
			equal(t, proto.CommandInvalid, fe.Code)
		case errors.Is(derr, frames.ErrMalformedMethod):
			isTrue(t, frames.Key(class, method).Known())
			equal(t, proto.SyntaxError, fe.Code)
		default:
			t.Fatalf("method error %q wraps none of the method sentinels", derr)
		}
		return "error: " + derr.Error()
	}
	noError(t, perr, "DecodeMethod accepted what Parser refused")
	equal(t, decoded, parsed, "Parser and DecodeMethod decode differently")
	k := decoded.Key()
	equal(t, binary.BigEndian.Uint16(payload), k.ClassID())
	equal(t, binary.BigEndian.Uint16(payload[2:]), k.MethodID())
	isTrue(t, k.Known())
	enc := requireMethodRoundTrip(t, decoded)
	return fmt.Sprintf("%s %x", k, enc)
}

// requireMethodRoundTrip encodes m, decodes the result, requires an equal
// method and identical bytes from encoding that, and returns the payload.
func requireMethodRoundTrip(t *testing.T, m frames.Method) []byte {
	enc, err := frames.AppendMethodArgs(nil, m)
	noError(t, err, "%s does not encode", m.Key())
	again, err := frames.DecodeMethod(0, enc)
	noError(t, err, "%s does not decode what it encoded: %x", m.Key(), enc)
	equal(t, m, again, "%s changed across encode and decode", m.Key())
	enc2, err := frames.AppendMethodArgs(nil, again)
	noError(t, err)
	equal(t, enc, enc2, "%s encodes differently the second time", m.Key())
	return enc
}

// checkHeaderPayload decodes a content-header payload and describes it.
func checkHeaderPayload(t *testing.T, ch uint16, payload []byte) string {
	var h frames.ContentHeader
	if err := h.Parse(ch, payload); err != nil {
		fe := requireFrameError(t, err)
		equal(t, proto.FrameError, fe.Code)
		equal(t, ch, fe.Channel)
		errorIs(t, err, frames.ErrMalformedHeader)
		return "error: " + err.Error()
	}
	equal(t, frames.ClassBasic, h.ClassID)
	desc := fmt.Sprintf("class %d weight %d body %d", h.ClassID, h.Weight, h.BodySize)
	props, err := h.Properties.Properties()
	if err != nil {
		requireTableError(t, err)
		return desc + " headers error: " + err.Error()
	}
	return fmt.Sprintf("%s properties %x", desc, requirePropertiesRoundTrip(t, props))
}

// requirePropertiesRoundTrip encodes p, decodes the result, requires equal
// properties (with Flags normalised to the flags Append writes, as
// Properties documents) and identical bytes from encoding them again.
func requirePropertiesRoundTrip(t *testing.T, p proto.Properties) []byte {
	enc, err := p.Append(nil)
	noError(t, err, "properties do not encode")
	again, err := proto.ParseProperties(enc)
	noError(t, err, "properties do not decode what they encoded: %x", enc)
	want := p
	want.Flags = p.PresentFlags()
	equal(t, want, again, "properties changed across encode and decode")
	enc2, err := again.Append(nil)
	noError(t, err)
	equal(t, enc, enc2, "properties encode differently the second time")
	return enc
}

// FuzzTable decodes arbitrary bytes as a length-prefixed table and as bare
// table fields and requires that whatever decodes round-trips.
func FuzzTable(f *testing.F) {
	s := newSeeds(f)
	for _, b := range handMadeTables() {
		s.add(b)
	}
	for _, b := range recordedTables(f) {
		s.add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, n, err := proto.ReadTable(data)
		if err != nil {
			requireTableError(t, err)
		} else {
			isTrue(t, n >= 4)
			isTrue(t, n <= len(data))
			equalValues(t, binary.BigEndian.Uint32(data), n-4, "ReadTable used more or less than the prefix says")
			touchTable(tbl)
			enc, err := proto.AppendTable(nil, tbl)
			noError(t, err, "a decoded table does not encode")
			requireCanonicalUpToBools(t, data[:n], enc)
			again, m, err := proto.ReadTable(enc)
			noError(t, err, "the table does not decode what it encoded: %x", enc)
			equal(t, len(enc), m)
			equal(t, tbl, again, "the table changed across encode and decode")
			enc2, err := proto.AppendTable(nil, again)
			noError(t, err)
			equal(t, enc, enc2, "the table encodes differently the second time")
			body, err := proto.DecodeTableFields(data[4:n])
			noError(t, err, "ReadTable accepted a body DecodeTableFields refuses")
			equal(t, tbl, body)
		}

		fields, err := proto.DecodeTableFields(data)
		if err != nil {
			requireTableError(t, err)
			return
		}
		touchTable(fields)
		enc, err := proto.AppendTableFields(nil, fields)
		noError(t, err, "decoded fields do not encode")
		requireCanonicalUpToBools(t, data, enc)
		again, err := proto.DecodeTableFields(enc)
		noError(t, err, "fields do not decode what they encoded: %x", enc)
		equal(t, fields, again, "fields changed across encode and decode")
		enc2, err := proto.AppendTableFields(nil, again)
		noError(t, err)
		equal(t, enc, enc2, "fields encode differently the second time")
	})
}

// requireCanonicalUpToBools requires that re-encoding decoded table bytes
// gave back the same bytes, except booleans: the decoder reads any non-zero
// octet after 't' as true and the encoder writes true as 1.
func requireCanonicalUpToBools(t *testing.T, in, out []byte) {
	equal(t, len(in), len(out), "re-encoding changed the table's length:\n in %x\nout %x", in, out)
	for i := range in {
		if in[i] != out[i] {
			isTrue(t, i > 0 && out[i-1] == 't' && out[i] == 1 && in[i] > 1,
				"re-encoding changed byte %d (0x%02x → 0x%02x) and it is no boolean:\n in %x\nout %x", i, in[i], out[i], in, out)
		}
	}
}

// touchTable runs every accessor over a decoded table; they must not panic.
func touchTable(tbl proto.Table) {
	_ = tbl.Map()
	for _, fld := range tbl {
		touchValue(fld.Value)
		_, _ = tbl.Get(fld.Name)
	}
}

func touchValue(v proto.Value) {
	_ = v.String()
	_ = v.Interface()
	_ = v.Kind().String()
	_, _ = v.AsBool()
	_, _ = v.AsInt()
	_, _ = v.AsFloat()
	if d, ok := v.AsDecimal(); ok {
		_ = d.String()
		_ = d.Float64()
	}
	_, _ = v.AsString()
	_, _ = v.AsBytes()
	_, _ = v.AsTime()
	if t, ok := v.AsTable(); ok {
		touchTable(t)
	}
	if a, ok := v.AsArray(); ok {
		for _, e := range a {
			touchValue(e)
		}
	}
}

// FuzzProperties decodes arbitrary bytes as a basic property list and
// requires that whatever decodes round-trips.
func FuzzProperties(f *testing.F) {
	s := newSeeds(f)
	for _, b := range handMadeProperties() {
		s.add(b)
	}
	for _, b := range recordedPropertyLists(f) {
		s.add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v proto.PropertiesView
		if err := v.Parse(data); err != nil {
			errorIs(t, err, proto.ErrMalformedProperties)
			return
		}
		isTrue(t, v.Flags&^proto.AllPropertyFlags == 0, "the view reports flags that name no property")
		p, err := v.Properties()
		if err != nil {
			requireTableError(t, err)
			return
		}
		equal(t, v.Flags, p.Flags, "decoded Flags are not exactly the properties on the wire")
		equal(t, p.Flags, p.PresentFlags(), "a decoded property is set but not flagged")
		enc := requirePropertiesRoundTrip(t, p)
		if binary.BigEndian.Uint16(data)&1 == 0 && headersCanonical(v.Headers) {
			// No continuation word to drop and headers that re-encode to
			// their own bytes: the decoded list re-encodes to the input.
			equal(t, data, enc, "decoded properties do not re-encode to the same bytes")
		}
	})
}

// headersCanonical reports whether raw re-encodes to itself.
func headersCanonical(raw proto.RawTable) bool {
	t, err := raw.Decode()
	if err != nil {
		return false
	}
	enc, err := proto.AppendTableFields(nil, t)
	return err == nil && bytes.Equal(enc, raw)
}

// FuzzMethod decodes a class id, a method id and arguments as a method
// payload and requires that whatever decodes round-trips, alone and in a
// frame.
func FuzzMethod(f *testing.F) {
	for _, v := range handMadeMethods {
		f.Add(v.class, v.method, v.args)
	}
	seen := map[string]bool{}
	for _, p := range recordedMethodPayloads(f) {
		if len(p) < 4 || seen[string(p)] {
			continue
		}
		seen[string(p)] = true
		f.Add(binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), p[4:])
	}
	f.Fuzz(func(t *testing.T, class, method uint16, args []byte) {
		payload := binary.BigEndian.AppendUint16(nil, class)
		payload = binary.BigEndian.AppendUint16(payload, method)
		payload = append(payload, args...)

		var p frames.Parser
		first := checkMethodPayload(t, &p, 0, payload)
		// Again on the same Parser, now warm: its reused struct and its
		// interned strings must not change the result.
		equal(t, first, checkMethodPayload(t, &p, 0, payload), "a warm Parser decodes differently")

		m, err := frames.DecodeMethod(9, payload)
		if err != nil {
			return
		}
		args2, err := frames.AppendMethodArgs(nil, m)
		noError(t, err)
		frame, err := frames.AppendMethod(nil, 9, m)
		noError(t, err)
		fr, n, err := frames.ReadFrame(frame, 0)
		noError(t, err)
		equal(t, len(frame), n)
		equal(t, frames.FrameMethod, fr.Type)
		equalValues(t, 9, fr.Channel)
		equal(t, args2, fr.Payload, "AppendMethod and AppendMethodArgs disagree")
	})
}
