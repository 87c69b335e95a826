package frames

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/internal/wire"
)

// sampleStream is a message delivery (method, content header, two body
// frames) followed by a heartbeat, written by hand.
func sampleStream(t testing.TB) []byte {
	b := unhex(t, `01 0002 00000016 | 003c 003c | 04 63746167 | 0102030405060708 | 01 | 00 | 02 726b | ce
		02 0002 00000013 | 003c | 0000 | 0000000000000005 | 4000 | 04 757466 38 | ce
		03 0002 00000003 616263 ce
		03 0002 00000002 6465 ce
		08 0000 00000000 ce`)
	checkVector(t, b)
	return b
}

// ownedFrame is a Frame whose payload was copied out of the read buffer.
type ownedFrame struct {
	Type    FrameType
	Channel uint16
	Payload []byte
	Offset  int
}

// readAll splits b into frames, failing on any error or leftover bytes.
func readAll(t testing.TB, b []byte, maxFrameSize uint32) []ownedFrame {
	t.Helper()
	var out []ownedFrame
	off := 0
	for off < len(b) {
		f, n, err := ReadFrame(b[off:], maxFrameSize)
		require.NoError(t, err, "frame at offset %d", off)
		require.NotZero(t, n, "incomplete frame at offset %d of %d", off, len(b))
		out = append(out, ownedFrame{f.Type, f.Channel, bytes.Clone(f.Payload), off})
		off += n
	}
	return out
}

// checkPrefixes feeds ReadFrame every prefix of every frame of b (each
// prefix starting at a frame boundary, which is where a reader's buffer
// starts once the earlier frames are consumed): a proper prefix must ask
// for more, the whole frame must come back complete.
func checkPrefixes(t *testing.T, b []byte, maxFrameSize uint32) {
	t.Helper()
	for off := 0; off < len(b); {
		whole, n, err := ReadFrame(b[off:], maxFrameSize)
		require.NoError(t, err)
		require.NotZero(t, n)
		for i := 0; i < n; i++ {
			f, m, err := ReadFrame(b[off:off+i], maxFrameSize)
			if err != nil || m != 0 {
				t.Fatalf("frame at %d: prefix of %d of %d bytes: n=%d err=%v (want need-more)", off, i, n, m, err)
			}
			require.Equal(t, Frame{}, f)
		}
		f, m, err := ReadFrame(b[off:off+n], maxFrameSize)
		require.NoError(t, err)
		require.Equal(t, n, m)
		require.Equal(t, whole, f)
		off += n
	}
}

// readSplit feeds b to a reader in random chunks, the way bytes arrive from
// a socket, and returns the frames it assembles.
func readSplit(t testing.TB, b []byte, rng *rand.Rand, maxChunk int, maxFrameSize uint32) []ownedFrame {
	t.Helper()
	var out []ownedFrame
	var buf []byte
	consumed := 0
	for fed := 0; fed < len(b) || len(buf) > 0; {
		if fed < len(b) {
			k := min(1+rng.Intn(maxChunk), len(b)-fed)
			buf = append(buf, b[fed:fed+k]...)
			fed += k
		}
		for {
			f, n, err := ReadFrame(buf, maxFrameSize)
			require.NoError(t, err)
			if n == 0 {
				break
			}
			out = append(out, ownedFrame{f.Type, f.Channel, bytes.Clone(f.Payload), consumed})
			consumed += n
			buf = buf[n:]
		}
		if fed == len(b) {
			require.Empty(t, buf, "bytes left over at the end of the stream")
			break
		}
	}
	return out
}

func TestReadFrameStreamPrefixes(t *testing.T) {
	b := sampleStream(t)
	checkPrefixes(t, b, 0)
	checkPrefixes(t, b, FrameMinSize)

	// Literally every prefix of the whole stream: only complete frames
	// come out, never an error.
	whole := readAll(t, b, 0)
	require.Len(t, whole, 5)
	for i := 0; i <= len(b); i++ {
		var got []ownedFrame
		rest := b[:i]
		off := 0
		for {
			f, n, err := ReadFrame(rest, 0)
			require.NoError(t, err, "prefix %d", i)
			if n == 0 {
				break
			}
			got = append(got, ownedFrame{f.Type, f.Channel, bytes.Clone(f.Payload), off})
			rest, off = rest[n:], off+n
		}
		require.Len(t, got, complete(whole, i), "prefix %d", i)
		if len(got) > 0 {
			require.Equal(t, whole[:len(got)], got, "prefix %d", i)
		}
	}

	require.Equal(t, []FrameType{FrameMethod, FrameHeader, FrameBody, FrameBody, FrameHeartbeat},
		[]FrameType{whole[0].Type, whole[1].Type, whole[2].Type, whole[3].Type, whole[4].Type})
}

// complete counts the frames of fs that lie wholly within the first n bytes.
func complete(fs []ownedFrame, n int) int {
	c := 0
	for _, f := range fs {
		if f.Offset+len(f.Payload)+FrameOverhead <= n {
			c++
		}
	}
	return c
}

func TestReadFrameRandomSplits(t *testing.T) {
	b := sampleStream(t)
	whole := readAll(t, b, 0)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		require.Equal(t, whole, readSplit(t, b, rng, 1+i%20, FrameMinSize))
	}
}

func TestReadFrameRecordings(t *testing.T) {
	dir := trafficDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	rng := rand.New(rand.NewSource(2))
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			if strings.HasSuffix(path, ".client.bin") {
				// The client stream opens with the protocol header; its
				// prefixes are need-more, the whole of it is not a frame.
				for i := 0; i < len(ProtocolHeader); i++ {
					_, n, err := ReadFrame(b[:i], 0)
					require.NoError(t, err)
					require.Zero(t, n)
				}
				require.Equal(t, ProtocolHeader, string(b[:8]))
				b = b[8:]
			}
			const frameMax = 131072 // negotiated in every recording
			checkPrefixes(t, b, frameMax)
			whole := readAll(t, b, frameMax)
			for _, chunk := range []int{1 << 20, 4096, 1000, 97} {
				require.Equal(t, whole, readSplit(t, b, rng, chunk, frameMax), "chunks of up to %d bytes", chunk)
			}
			if len(b) < 5000 {
				require.Equal(t, whole, readSplit(t, b, rng, 3, frameMax))
			}
		})
	}
}

// requireFrameErr checks that err is an *Error wrapping sentinel, with the
// given code and channel.
func requireFrameErr(t testing.TB, err error, sentinel error, code proto.ReplyCode, ch uint16) *Error {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, sentinel)
	var fe *Error
	require.True(t, errors.As(err, &fe), "%T is not *frames.Error", err)
	require.Equal(t, code, fe.Code, "reply code: %v", err)
	require.Equal(t, ch, fe.Channel, "channel: %v", err)
	require.NotEmpty(t, fe.Error())
	return fe
}

func TestReadFrameMalformed(t *testing.T) {
	tests := []struct {
		name     string
		hex      string
		max      uint32
		sentinel error
		ch       uint16
	}{
		{"bad frame end", "01 0005 00000005 0014000a00 ff", 0, ErrBadFrameEnd, 5},
		{"bad frame end on empty heartbeat", "08 0000 00000000 00", 0, ErrBadFrameEnd, 0},
		{"bad frame end, body", "03 0009 00000001 41 cd", 4096, ErrBadFrameEnd, 9},
		{"too large, header only", "01 0003 00000ff9", 4096, ErrFrameTooLarge, 3},
		{"too large by one byte, header only", "03 0004 00000ff9", FrameMinSize, ErrFrameTooLarge, 4},
		{"too large, declared 4 GiB", "03 0004 ffffffff", 131072, ErrFrameTooLarge, 4},
		{"too large, whole frame present", "03 0001 00000003 616263 ce", 10, ErrFrameTooLarge, 1},
		{"unknown frame type 4", "04 0000 00000000 ce", 0, ErrUnknownFrameType, 0},
		{"unknown frame type 0, header only", "00 0002 00000000", 0, ErrUnknownFrameType, 2},
		{"unknown frame type 0xce", "ce 0000 00000000 ce", 0, ErrUnknownFrameType, 0},
		{"A but not AMQP", "41 4d 51 58 00 00 09 01", 0, ErrUnknownFrameType, 0},
		{"A then garbage, short", "41 42", 0, ErrUnknownFrameType, 0},
		{"heartbeat on channel 1", "08 0001 00000000 ce", 0, ErrBadHeartbeat, 1},
		{"heartbeat on channel 1, header only", "08 0001 00000000", 0, ErrBadHeartbeat, 1},
		{"heartbeat with payload", "08 0000 00000001 00 ce", 0, ErrBadHeartbeat, 0},
		{"heartbeat with payload, header only", "08 0000 00000001", 0, ErrBadHeartbeat, 0},
		{"protocol header 0-9-0", hexString("AMQP\x00\x00\x09\x00"), 0, ErrProtocolMismatch, 0},
		{"protocol header 1-0-0", hexString("AMQP\x00\x01\x00\x00"), 0, ErrProtocolMismatch, 0},
		{"protocol header then more", hexString("AMQP\x01\x01\x00\x0a") + "01", 0, ErrProtocolMismatch, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.hex)
			f, n, err := ReadFrame(b, tc.max)
			requireFrameErr(t, err, tc.sentinel, proto.FrameError, tc.ch)
			require.Zero(t, n)
			require.Equal(t, Frame{}, f)
		})
	}
}

func hexString(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		sb.WriteString("0123456789abcdef"[s[i]>>4 : s[i]>>4+1])
		sb.WriteString("0123456789abcdef"[s[i]&15 : s[i]&15+1])
	}
	return sb.String()
}

func TestReadFrameSizeLimitBoundary(t *testing.T) {
	// A frame of exactly frame_max bytes is accepted; from the header alone
	// ReadFrame asks for more.
	hdr := unhex(t, "03 0001 00000ff8") // 4088 + 8 = 4096
	f, n, err := ReadFrame(hdr, FrameMinSize)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, Frame{}, f)

	full := append(bytes.Clone(hdr), make([]byte, 4088)...)
	full = append(full, FrameEndOctet)
	f, n, err = ReadFrame(full, FrameMinSize)
	require.NoError(t, err)
	require.Equal(t, 4096, n)
	require.Len(t, f.Payload, 4088)

	// Zero means no limit.
	_, n, err = ReadFrame(unhex(t, "03 0001 7fffffff"), 0)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestProtocolHeaderMismatch(t *testing.T) {
	server := "AMQP\x00\x00\x09\x00"
	for i := 0; i < len(server); i++ {
		f, n, err := ReadFrame([]byte(server[:i]), 0)
		require.NoError(t, err, "prefix %q", server[:i])
		require.Zero(t, n)
		require.Equal(t, Frame{}, f)
	}
	_, n, err := ReadFrame([]byte(server), 0)
	requireFrameErr(t, err, ErrProtocolMismatch, proto.FrameError, 0)
	require.Zero(t, n)

	major, minor, rev, err := ParseProtocolHeader([]byte(server))
	require.NoError(t, err)
	require.Equal(t, [3]uint8{0, 9, 0}, [3]uint8{major, minor, rev})

	major, minor, rev, err = ParseProtocolHeader([]byte(ProtocolHeader))
	require.NoError(t, err)
	require.Equal(t, [3]uint8{0, 9, 1}, [3]uint8{major, minor, rev})

	for _, bad := range []string{"", "AMQP", "AMQP\x00\x00\x09", "HTTP/1.1", "amqp\x00\x00\x09\x01"} {
		_, _, _, err = ParseProtocolHeader([]byte(bad))
		require.ErrorIs(t, err, ErrBadProtocolHeader, "%q", bad)
	}
}

func TestParseMethodMalformed(t *testing.T) {
	tests := []struct {
		name     string
		ch       uint16
		hex      string
		sentinel error
		code     proto.ReplyCode
		class    uint16
		method   uint16
	}{
		{"empty payload", 1, "", ErrMalformedMethod, proto.FrameError, 0, 0},
		{"one byte", 1, "00", ErrMalformedMethod, proto.FrameError, 0, 0},
		{"three bytes", 2, "00 3c 00", ErrMalformedMethod, proto.FrameError, 0, 0},
		{"unknown class", 3, "0063 000a", ErrUnknownClass, proto.NotImplemented, 99, 10},
		{"unknown class 0", 0, "0000 0000", ErrUnknownClass, proto.NotImplemented, 0, 0},
		{"unknown class with arguments", 4, "ffff ffff 0102", ErrUnknownClass, proto.NotImplemented, 0xffff, 0xffff},
		{"unknown method of basic", 5, "003c 0063", ErrUnknownMethod, proto.CommandInvalid, 60, 99},
		{"unknown method of connection", 0, "000a 0000", ErrUnknownMethod, proto.CommandInvalid, 10, 0},
		{"exchange.unbind-ok is 51, not 41", 1, "0028 0029", ErrUnknownMethod, proto.CommandInvalid, 40, 41},
		{"basic.ack truncated delivery tag", 6, "003c 0050 00000000000000", ErrMalformedMethod, proto.SyntaxError, 60, 80},
		{"basic.ack missing bits", 6, "003c 0050 0000000000000001", ErrMalformedMethod, proto.SyntaxError, 60, 80},
		{"basic.ack trailing byte", 6, "003c 0050 0000000000000001 00 00", ErrMalformedMethod, proto.SyntaxError, 60, 80},
		{"tx.select trailing byte", 2, "005a 000a 00", ErrMalformedMethod, proto.SyntaxError, 90, 10},
		{"shortstr longer than payload", 1, "003c 0028 0000 05 6578", ErrMalformedMethod, proto.SyntaxError, 60, 40},
		{"queue.declare table length past end", 1, "0032 000a 0000 00 00 00000064 0000", ErrMalformedMethod, proto.SyntaxError, 50, 10},
		{"queue.declare table with unknown field kind", 1, "0032 000a 0000 00 00 00000003 01 61 3f", ErrMalformedMethod, proto.SyntaxError, 50, 10},
		{"queue.declare table value truncated", 1, "0032 000a 0000 00 00 00000004 01 61 49 00", ErrMalformedMethod, proto.SyntaxError, 50, 10},
		{"connection.start longstr past end", 0, "000a 000a 00 09 00000000 00000010 41", ErrMalformedMethod, proto.SyntaxError, 10, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := unhex(t, tc.hex)
			var p Parser
			for name, parse := range map[string]func(uint16, []byte) (Method, error){
				"Parser":       p.ParseMethod,
				"DecodeMethod": DecodeMethod,
			} {
				m, err := parse(tc.ch, payload)
				require.Nil(t, m, name)
				fe := requireFrameErr(t, err, tc.sentinel, tc.code, tc.ch)
				require.Equal(t, tc.class, fe.ClassID, name)
				require.Equal(t, tc.method, fe.MethodID, name)
			}
		})
	}
}

func TestContentHeaderMalformed(t *testing.T) {
	tests := []struct {
		name string
		ch   uint16
		hex  string
	}{
		{"empty", 1, ""},
		{"truncated body size", 1, "003c 0000 00000000"},
		{"no flags", 1, "003c 0000 0000000000000001"},
		{"one flags byte", 1, "003c 0000 0000000000000001 00"},
		{"class queue", 2, "0032 0000 0000000000000000 0000"},
		{"class 0", 3, "0000 0000 0000000000000000 0000"},
		{"flag bit 1", 1, "003c 0000 0000000000000000 0002"},
		{"continuation word naming a property", 1, "003c 0000 0000000000000000 0001 8000"},
		{"continuation word missing", 1, "003c 0000 0000000000000000 8001"},
		{"second continuation missing", 1, "003c 0000 0000000000000000 0001 0001"},
		{"content-type missing", 1, "003c 0000 0000000000000000 8000"},
		{"content-type truncated", 1, "003c 0000 0000000000000000 8000 05 6162"},
		{"headers length past end", 1, "003c 0000 0000000000000000 2000 00000010 00"},
		{"timestamp truncated", 1, "003c 0000 0000000000000000 0040 00000000"},
		{"trailing byte", 1, "003c 0000 0000000000000000 0000 00"},
		{"trailing byte after delivery-mode", 1, "003c 0000 0000000000000000 1000 02 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h ContentHeader
			err := h.Parse(tc.ch, unhex(t, tc.hex))
			requireFrameErr(t, err, ErrMalformedHeader, proto.FrameError, tc.ch)
		})
	}

	// A continuation word that names nothing is accepted.
	var h ContentHeader
	require.NoError(t, h.Parse(1, unhex(t, "003c 0000 0000000000000007 9001 0001 0000 | 01 61 | 02")))
	require.Equal(t, proto.FlagContentType|proto.FlagDeliveryMode, h.Properties.Flags)
	require.Equal(t, "a", string(h.Properties.ContentType))
	require.Equal(t, uint8(2), h.Properties.DeliveryMode)
	require.Equal(t, uint64(7), h.BodySize)

	// Headers are kept raw by Parse; a bad table shows when decoded.
	require.NoError(t, h.Parse(1, unhex(t, "003c 0000 0000000000000000 2000 00000003 01 61 3f")))
	_, err := h.Properties.Properties()
	require.ErrorIs(t, err, proto.ErrMalformedTable)
}

func TestAppendBody(t *testing.T) {
	body := make([]byte, 10000)
	for i := range body {
		body[i] = byte(i * 7)
	}
	for _, max := range []uint32{FrameMinSize, 131072, 0, 1000, 9, 10008, 10007, 10009} {
		prefix := []byte{1, 2, 3}
		out := AppendBody(bytes.Clone(prefix), 7, body, max)
		require.Equal(t, prefix, out[:3])
		frames := readAll(t, out[3:], max)
		var got []byte
		for _, f := range frames {
			require.Equal(t, FrameBody, f.Type)
			require.Equal(t, uint16(7), f.Channel)
			require.NotEmpty(t, f.Payload)
			if max != 0 {
				require.LessOrEqual(t, len(f.Payload)+FrameOverhead, int(max))
			}
			got = append(got, f.Payload...)
		}
		require.Equal(t, body, got, "frame_max %d", max)
		if max == 0 || max >= 10008 {
			require.Len(t, frames, 1)
		}
		if max == FrameMinSize {
			require.Len(t, frames, 3) // 4088 + 4088 + 1824
			require.Len(t, frames[0].Payload, 4088)
			require.Len(t, frames[2].Payload, 1824)
		}
		if max == 10007 {
			require.Len(t, frames, 2)
		}
	}

	require.Empty(t, AppendBody(nil, 1, nil, FrameMinSize))
	require.Empty(t, AppendBody(nil, 1, []byte{}, 0))
	require.Equal(t, []byte{9}, AppendBody([]byte{9}, 1, nil, 0))

	require.Equal(t, 4088, MaxBodyFrameSize(FrameMinSize))
	require.Equal(t, 1, MaxBodyFrameSize(8))
	require.Equal(t, 1, MaxBodyFrameSize(9))
	require.Greater(t, MaxBodyFrameSize(0), 1<<30)
}

func TestAppendMessage(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 1000)
	props := &proto.Properties{ContentType: "text/plain", Headers: proto.Table{{Name: "k", Value: proto.Int64(-1)}}}
	for _, m := range []Method{
		&BasicPublish{Exchange: "x", RoutingKey: "r", Mandatory: true},
		&BasicDeliver{ConsumerTag: "c", DeliveryTag: 3, Exchange: "x", RoutingKey: "r"},
		&BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", Exchange: "x", RoutingKey: "r"},
		&BasicGetOK{DeliveryTag: 9, MessageCount: 1},
	} {
		t.Run(m.Key().String(), func(t *testing.T) {
			out, err := AppendMessage([]byte("pre"), 4, m, props, body, FrameMinSize)
			require.NoError(t, err)
			require.Equal(t, "pre", string(out[:3]))
			frames := readAll(t, out[3:], FrameMinSize)
			require.Len(t, frames, 2+3)
			got, err := DecodeMethod(4, frames[0].Payload)
			require.NoError(t, err)
			require.Equal(t, m, got)
			var h ContentHeader
			require.NoError(t, h.Parse(4, frames[1].Payload))
			require.Equal(t, uint64(len(body)), h.BodySize)
			p, err := h.Properties.Properties()
			require.NoError(t, err)
			require.Equal(t, "text/plain", p.ContentType)
			require.Equal(t, props.Headers, p.Headers)
			var b []byte
			for _, f := range frames[2:] {
				require.Equal(t, FrameBody, f.Type)
				require.Equal(t, uint16(4), f.Channel)
				b = append(b, f.Payload...)
			}
			require.Equal(t, body, b)
		})
	}

	// Empty body: method and header only.
	out, err := AppendMessage(nil, 1, &BasicPublish{}, nil, nil, FrameMinSize)
	require.NoError(t, err)
	frames := readAll(t, out, 0)
	require.Len(t, frames, 2)
	require.Equal(t, FrameHeader, frames[1].Type)

	// Methods without content are refused, dst unchanged.
	for _, m := range []Method{&BasicAck{}, &ConnectionTune{}, &BasicGet{}, &BasicGetEmpty{}, &QueueDeclare{}} {
		dst := []byte("keep")
		out, err := AppendMessage(dst, 1, m, nil, []byte("x"), 0)
		require.Error(t, err, m.Key().String())
		require.Contains(t, err.Error(), m.Key().String())
		require.Equal(t, "keep", string(out))
	}

	// An encoding failure in the method or the header leaves dst unchanged.
	long := strings.Repeat("x", 256)
	dst := []byte("keep")
	out, err = AppendMessage(dst, 1, &BasicPublish{RoutingKey: long}, nil, []byte("x"), 0)
	require.ErrorIs(t, err, wire.ErrShortStringTooLong)
	require.Equal(t, "keep", string(out))
	out, err = AppendMessage(dst, 1, &BasicPublish{}, &proto.Properties{AppID: long}, []byte("x"), 0)
	require.ErrorIs(t, err, wire.ErrShortStringTooLong)
	require.Equal(t, "keep", string(out))
}

func TestShortStringTooLong(t *testing.T) {
	long := strings.Repeat("a", 256)
	ok := strings.Repeat("a", 255)

	// 255 bytes is fine.
	b, err := AppendMethod(nil, 1, &BasicPublish{Exchange: ok})
	require.NoError(t, err)
	m, err := DecodeMethod(1, b[FrameHeaderSize:len(b)-1])
	require.NoError(t, err)
	require.Equal(t, ok, m.(*BasicPublish).Exchange)

	for _, m := range []Method{
		&BasicPublish{Exchange: long},
		&BasicPublish{RoutingKey: long},
		&QueueDeclare{Queue: long},
		&BasicConsume{ConsumerTag: long},
		&ConnectionClose{ReplyText: long},
		&ConnectionStartOK{Mechanism: long},
		&BasicDeliver{RoutingKey: long},
		&ConnectionUpdateSecret{Reason: long},
	} {
		dst := []byte("keep")
		out, err := AppendMethod(dst, 1, m)
		require.Error(t, err, "%T", m)
		require.ErrorIs(t, err, wire.ErrShortStringTooLong, "%T", m)
		require.Equal(t, "keep", string(out), "%T", m)
		require.Len(t, out, 4)

		out, err = AppendMethodArgs(dst, m)
		require.ErrorIs(t, err, wire.ErrShortStringTooLong, "%T", m)
		require.Equal(t, "keep", string(out), "%T", m)
	}

	// Long strings are not limited.
	out, err := AppendMethod(nil, 0, &ConnectionStartOK{Response: strings.Repeat("r", 70000)})
	require.NoError(t, err)
	require.Len(t, out, FrameOverhead+4+4+1+4+70000+1)

	// A table field name over 255 bytes, and a property over 255 bytes.
	dst := []byte("keep")
	out, err = AppendMethod(dst, 1, &QueueDeclare{Arguments: proto.Table{{Name: long, Value: proto.Int32(1)}}})
	require.Error(t, err)
	require.Equal(t, "keep", string(out))
	out, err = AppendContentHeader(dst, 1, 0, &proto.Properties{ContentType: long})
	require.ErrorIs(t, err, wire.ErrShortStringTooLong)
	require.Equal(t, "keep", string(out))
	out, err = AppendContentHeader(dst, 1, 0, &proto.Properties{Headers: proto.Table{{Name: "a", Value: proto.TableValue(proto.Table{{Name: long}})}}})
	require.Error(t, err)
	require.Equal(t, "keep", string(out))
}

func TestGeneratedMetadata(t *testing.T) {
	t.Run("AcceptsReply", func(t *testing.T) {
		tests := []struct {
			req, reply MethodKey
			want       bool
		}{
			{MethodBasicGet, MethodBasicGetOK, true},
			{MethodBasicGet, MethodBasicGetEmpty, true},
			{MethodBasicGet, MethodBasicConsumeOK, false},
			{MethodConnectionStartOK, MethodConnectionSecure, true},
			{MethodConnectionStartOK, MethodConnectionTune, true},
			{MethodConnectionStartOK, MethodConnectionOpenOK, false},
			{MethodConnectionSecureOK, MethodConnectionSecure, true},
			{MethodConnectionSecureOK, MethodConnectionTune, true},
			{MethodBasicRecover, MethodBasicRecoverOK, true},
			{MethodBasicRecoverAsync, MethodBasicRecoverOK, false},
			{MethodConnectionUpdateSecret, MethodConnectionUpdateSecretOK, true},
			{MethodQueueDeclare, MethodQueueDeclareOK, true},
			{MethodQueueDeclare, MethodQueueBindOK, false},
			{MethodQueueUnbind, MethodQueueUnbindOK, true},
			{MethodExchangeUnbind, MethodExchangeUnbindOK, true},
			{MethodConfirmSelect, MethodConfirmSelectOK, true},
			{MethodChannelClose, MethodChannelCloseOK, true},
			{MethodConnectionClose, MethodConnectionCloseOK, true},
			{MethodConnectionClose, MethodChannelCloseOK, false},
			{MethodBasicPublish, MethodBasicAck, false},
			{MethodBasicAck, MethodBasicAck, false},
			{MethodConnectionTuneOK, MethodConnectionOpenOK, false},
		}
		for _, tc := range tests {
			require.Equal(t, tc.want, AcceptsReply(tc.req, tc.reply), "%s → %s", tc.req, tc.reply)
		}
		// Replies agrees with AcceptsReply everywhere.
		for _, req := range Methods() {
			replies := Replies(req)
			for _, reply := range Methods() {
				in := false
				for _, r := range replies {
					in = in || r == reply
				}
				require.Equal(t, in, AcceptsReply(req, reply), "%s → %s", req, reply)
			}
		}
		require.Equal(t, []MethodKey{MethodBasicGetOK, MethodBasicGetEmpty}, Replies(MethodBasicGet))
		require.Nil(t, Replies(MethodBasicPublish))
	})

	t.Run("ExpectsReply", func(t *testing.T) {
		for _, k := range Methods() {
			m := NewMethod(k)
			require.Equal(t, len(Replies(k)) > 0, m.ExpectsReply(), "%s", k)
			v := reflect.ValueOf(m).Elem()
			if nw := v.FieldByName("NoWait"); nw.IsValid() {
				require.True(t, m.ExpectsReply(), "%s without NoWait", k)
				nw.SetBool(true)
				require.False(t, m.ExpectsReply(), "%s with NoWait", k)
			}
		}
		require.False(t, (&QueueDeclare{NoWait: true}).ExpectsReply())
		require.True(t, (&QueueDeclare{}).ExpectsReply())
		require.False(t, (&BasicConsume{NoWait: true}).ExpectsReply())
		require.False(t, (&ConfirmSelect{NoWait: true}).ExpectsReply())
		require.True(t, (&QueueUnbind{}).ExpectsReply())
		require.False(t, (&BasicPublish{}).ExpectsReply())
		require.False(t, (&BasicAck{}).ExpectsReply())
	})

	t.Run("HasContent", func(t *testing.T) {
		content := map[MethodKey]bool{MethodBasicPublish: true, MethodBasicDeliver: true, MethodBasicReturn: true, MethodBasicGetOK: true}
		for _, k := range Methods() {
			require.Equal(t, content[k], k.HasContent(), "%s", k)
		}
	})

	t.Run("names and keys", func(t *testing.T) {
		require.Equal(t, "basic.deliver", MethodBasicDeliver.String())
		require.Equal(t, "exchange.unbind-ok", MethodExchangeUnbindOK.String())
		require.Equal(t, "connection.update-secret-ok", MethodConnectionUpdateSecretOK.String())
		require.Equal(t, "method 99.1", Key(99, 1).String())
		require.Equal(t, MethodBasicDeliver, Key(60, 60))
		require.Equal(t, uint16(60), MethodBasicNack.ClassID())
		require.Equal(t, uint16(120), MethodBasicNack.MethodID())
		require.False(t, Key(60, 99).Known())
		require.False(t, KnownClass(99))
		require.True(t, KnownClass(ClassConfirm))
		for _, s := range []string{"method", "content-header", "body", "heartbeat", "frame-type-9"} {
			found := false
			for _, ft := range []FrameType{1, 2, 3, 8, 9} {
				found = found || ft.String() == s
			}
			require.True(t, found, s)
		}
	})

	t.Run("Methods and NewMethod", func(t *testing.T) {
		keys := Methods()
		require.Len(t, keys, 64)
		seen := map[MethodKey]bool{}
		names := map[string]bool{}
		for _, k := range keys {
			require.False(t, seen[k], "duplicate key %s", k)
			seen[k] = true
			require.False(t, names[k.String()], "duplicate name %s", k)
			names[k.String()] = true
			require.True(t, k.Known(), "%s", k)
			require.True(t, KnownClass(k.ClassID()), "%s", k)
			require.True(t, k.SentByClient() || k.SentByServer(), "%s is sent by nobody", k)
			m := NewMethod(k)
			require.NotNil(t, m, "%s", k)
			require.Equal(t, k, m.Key())
			// Every method's zero value round-trips.
			b, err := AppendMethod(nil, 1, m)
			require.NoError(t, err, "%s", k)
			got, err := DecodeMethod(1, b[FrameHeaderSize:len(b)-1])
			require.NoError(t, err, "%s", k)
			require.Equal(t, m, got, "%s", k)
			for _, r := range Replies(k) {
				require.True(t, seen[r] || r.Known(), "%s answers %s", r, k)
			}
		}
		require.Nil(t, NewMethod(Key(60, 99)))
		require.Nil(t, NewMethod(Key(99, 10)))
		keys[0] = 0
		require.Equal(t, MethodConnectionStart, Methods()[0], "Methods returns a new slice")
	})
}

func TestErrorString(t *testing.T) {
	_, err := DecodeMethod(3, unhex(t, "003c 0050 00"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "basic.ack")
	require.Contains(t, err.Error(), "channel 3")
	require.Contains(t, err.Error(), "502")
	var fe *Error
	require.True(t, errors.As(err, &fe))
	require.ErrorIs(t, fe.Unwrap(), ErrMalformedMethod)
}
