package frames

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// trafficDir returns the directory of the RabbitMQ recordings, which are
// part of the repository (testdata/rabbitmq-3.10.8 at its root).
func trafficDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "rabbitmq-3.10.8")
	_, err := os.Stat(filepath.Join(dir, "README.md"))
	require.NoError(t, err, "the RabbitMQ 3.10.8 recordings belong in the repository")
	return dir
}

// listingLine is one frame of a *.frames.txt listing.
type listingLine struct {
	Offset  int
	Channel uint16
	Size    int
	What    string // class.method, "content-header body_size=N flags=0xNNNN", "body" or "heartbeat"
}

type listing struct {
	ProtocolHeader string // the Python repr of the header, for client streams
	Frames         []listingLine
	Counts         map[string]int
}

var (
	listingFrameRE  = regexp.MustCompile(`^\s*(\d+)\s+ch=(\d+)\s+size=(\d+)\s+(\S.*?)\s*$`)
	listingHeaderRE = regexp.MustCompile(`^\s*(\d+)\s+protocol-header\s+(\S.*?)\s*$`)
	listingCountsRE = regexp.MustCompile(`^#\s*counts:\s*(\{.*\})\s*$`)
)

func readListing(t testing.TB, path string) listing {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var l listing
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if m := listingCountsRE.FindStringSubmatch(line); m != nil {
			l.Counts = nil // the last counts line wins
			require.NoError(t, json.Unmarshal([]byte(m[1]), &l.Counts), "%s:%d", path, lineNo)
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := listingHeaderRE.FindStringSubmatch(line); m != nil {
			require.Equal(t, "0", m[1], "%s:%d: protocol header not at offset 0", path, lineNo)
			l.ProtocolHeader = m[2]
			continue
		}
		m := listingFrameRE.FindStringSubmatch(line)
		require.NotNil(t, m, "%s:%d: cannot parse %q", path, lineNo, line)
		off, err1 := strconv.Atoi(m[1])
		ch, err2 := strconv.ParseUint(m[2], 10, 16)
		size, err3 := strconv.Atoi(m[3])
		require.NoError(t, err1)
		require.NoError(t, err2)
		require.NoError(t, err3)
		l.Frames = append(l.Frames, listingLine{off, uint16(ch), size, strings.Join(strings.Fields(m[4]), " ")})
	}
	require.NoError(t, sc.Err())
	require.NotNil(t, l.Counts, "%s: no counts line", path)
	return l
}

// countKey is the name a frame is counted under in a listing's counts.
func countKey(what string) string {
	if strings.HasPrefix(what, "content-header") {
		return "content-header"
	}
	return what
}

// decodedFrame is one frame of a recording, decoded.
type decodedFrame struct {
	Offset  int // in the .bin file, protocol header included
	Frame   Frame
	Raw     []byte // the whole frame
	Method  Method // for method frames (DecodeMethod's own copy)
	Header  *ContentHeader
	Listing string
}

// decodeRecording reads a .bin file and decodes all its frames, checking
// them against the .frames.txt listing.
func decodeRecording(t *testing.T, binPath string) ([]decodedFrame, listing) {
	t.Helper()
	data, err := os.ReadFile(binPath)
	require.NoError(t, err)
	l := readListing(t, strings.TrimSuffix(binPath, ".bin")+".frames.txt")

	start := 0
	if strings.HasSuffix(binPath, ".client.bin") {
		require.GreaterOrEqual(t, len(data), 8)
		require.Equal(t, ProtocolHeader, string(data[:8]), "client stream must open with the 0-9-1 protocol header")
		require.Equal(t, `b'AMQP\x00\x00\t\x01'`, l.ProtocolHeader)
		major, minor, rev, err := ParseProtocolHeader(data[:8])
		require.NoError(t, err)
		require.Equal(t, [3]uint8{0, 9, 1}, [3]uint8{major, minor, rev})
		start = 8
	} else {
		require.Empty(t, l.ProtocolHeader)
	}

	var parser Parser
	var out []decodedFrame
	counts := map[string]int{}
	off := start
	for i := 0; off < len(data); i++ {
		f, n, err := ReadFrame(data[off:], 131072)
		require.NoError(t, err, "frame %d at offset %d", i, off)
		require.NotZero(t, n, "truncated frame %d at offset %d", i, off)
		d := decodedFrame{Offset: off, Frame: f, Raw: data[off : off+n]}
		switch f.Type {
		case FrameMethod:
			m, err := parser.ParseMethod(f.Channel, f.Payload)
			require.NoError(t, err, "frame %d at offset %d", i, off)
			d.Listing = m.Key().String()
			owned, err := DecodeMethod(f.Channel, f.Payload)
			require.NoError(t, err)
			require.Equal(t, owned, m, "Parser and DecodeMethod disagree at offset %d", off)
			d.Method = owned
		case FrameHeader:
			var h ContentHeader
			require.NoError(t, h.Parse(f.Channel, f.Payload), "frame %d at offset %d", i, off)
			rawFlags := binary.BigEndian.Uint16(f.Payload[12:14])
			require.Equal(t, proto.PropertyFlags(rawFlags), h.Properties.Flags)
			d.Listing = fmt.Sprintf("content-header body_size=%d flags=0x%04x", h.BodySize, rawFlags)
			d.Header = &h
		case FrameBody:
			d.Listing = "body"
		case FrameHeartbeat:
			d.Listing = "heartbeat"
		default:
			t.Fatalf("frame %d at offset %d: type %v", i, off, f.Type)
		}
		counts[countKey(d.Listing)]++
		out = append(out, d)
		off += n
	}

	// Every frame matches its listing line exactly.
	require.Len(t, out, len(l.Frames), "frame count")
	for i, d := range out {
		want := l.Frames[i]
		got := listingLine{d.Offset, d.Frame.Channel, len(d.Frame.Payload), d.Listing}
		require.Equal(t, want, got, "frame %d", i)
	}
	require.Equal(t, l.Counts, counts, "counts")
	return out, l
}

func TestRecordedTraffic(t *testing.T) {
	dir := trafficDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.bin"))
	require.NoError(t, err)
	require.Len(t, files, 10)
	for _, path := range files {
		client := strings.HasSuffix(path, ".client.bin")
		t.Run(filepath.Base(path), func(t *testing.T) {
			frames, _ := decodeRecording(t, path)
			var body []byte
			var header *ContentHeader
			for i, d := range frames {
				switch d.Frame.Type {
				case FrameMethod:
					// Decoded methods re-encode to the recorded bytes.
					// Client methods must; server methods should too,
					// since decoding keeps every reserved field.
					again, err := AppendMethod(nil, d.Frame.Channel, d.Method)
					require.NoError(t, err, "%s at %d", d.Listing, d.Offset)
					require.Equal(t, d.Raw, again, "%s at %d re-encodes differently", d.Listing, d.Offset)
					if d.Method.Key().HasContent() {
						require.Nil(t, header, "content method while a body is pending")
						require.Less(t, i+1, len(frames))
						require.Equal(t, FrameHeader, frames[i+1].Frame.Type, "%s not followed by a header", d.Listing)
					}
					if !client {
						require.True(t, d.Method.Key().SentByServer(), "server sent %s", d.Listing)
					} else {
						require.True(t, d.Method.Key().SentByClient(), "client sent %s", d.Listing)
					}
				case FrameHeader:
					p, err := d.Header.Properties.Properties()
					require.NoError(t, err)
					again, err := AppendContentHeader(nil, d.Frame.Channel, d.Header.BodySize, &p)
					require.NoError(t, err)
					require.Equal(t, d.Raw, again, "content header at %d re-encodes differently", d.Offset)
					header, body = d.Header, nil
					if header.BodySize == 0 {
						header = nil
					}
				case FrameBody:
					require.NotNil(t, header, "body frame at %d without a header", d.Offset)
					body = append(body, d.Frame.Payload...)
					require.LessOrEqual(t, uint64(len(body)), header.BodySize)
					if uint64(len(body)) == header.BodySize {
						header = nil
					}
				}
			}
			require.Nil(t, header, "stream ends inside a message")
		})
	}
}

// TestRecordedStartOK checks the connection.start-ok of every client: the
// AMQPLAIN response is a field table without its length prefix.
func TestRecordedStartOK(t *testing.T) {
	dir := trafficDir(t)
	tests := []struct {
		file      string
		mechanism string
		password  string
	}{
		{"session-full.client.bin", "AMQPLAIN", "guest"},
		{"amqplain.client.bin", "AMQPLAIN", "guest"},
		{"unknown-vhost.client.bin", "AMQPLAIN", "guest"},
		{"wrong-password.client.bin", "AMQPLAIN", "not-the-password"},
		{"confirms-nack.client.bin", "PLAIN", "guest"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			frames, _ := decodeRecording(t, filepath.Join(dir, tc.file))
			require.NotEmpty(t, frames)
			so, ok := frames[0].Method.(*ConnectionStartOK)
			require.True(t, ok, "first client frame is %s", frames[0].Listing)
			require.Equal(t, tc.mechanism, so.Mechanism)
			require.Equal(t, "en_US", so.Locale)
			product, ok := so.ClientProperties.Get("product")
			require.True(t, ok)
			require.Equal(t, proto.KindString, product.Kind())

			if tc.mechanism == "PLAIN" {
				require.Equal(t, "\x00guest\x00"+tc.password, so.Response)
				return
			}
			resp, err := proto.DecodeTableFields([]byte(so.Response))
			require.NoError(t, err)
			require.Equal(t, proto.Table{
				{Name: "LOGIN", Value: proto.String("guest")},
				{Name: "PASSWORD", Value: proto.String(tc.password)},
			}, resp)
			for _, f := range resp {
				require.Equal(t, proto.KindString, f.Value.Kind(), f.Name)
			}
			again, err := proto.AppendTableFields(nil, resp)
			require.NoError(t, err)
			require.Equal(t, []byte(so.Response), again)

			// Building the response from scratch gives the same bytes,
			// and so does the whole frame.
			built, err := proto.AppendTableFields(nil, proto.Table{
				{Name: "LOGIN", Value: proto.String("guest")},
				{Name: "PASSWORD", Value: proto.String(tc.password)},
			})
			require.NoError(t, err)
			require.Equal(t, []byte(so.Response), built)
			frame, err := AppendMethod(nil, 0, &ConnectionStartOK{
				ClientProperties: so.ClientProperties,
				Mechanism:        "AMQPLAIN",
				Response:         string(built),
				Locale:           "en_US",
			})
			require.NoError(t, err)
			require.Equal(t, frames[0].Raw, frame)
		})
	}
}

// fullMessage is the message published in step 13 of session-full.
var fullMessage = struct {
	props   proto.Properties
	headers proto.Table
	body    string
}{
	props: proto.Properties{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    2,
		Priority:        5,
		CorrelationID:   "corr-1",
		ReplyTo:         "reply.q",
		Expiration:      "60000",
		MessageID:       "mid-1",
		Timestamp:       time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Type:            "kind",
		UserID:          "guest",
		AppID:           "capture",
		// Every property but cluster-id (py-amqp does not send it).
		Flags: proto.AllPropertyFlags &^ proto.FlagClusterID,
	},
	// The type letters are the ones py-amqp wrote (read from the bytes).
	headers: proto.Table{
		{Name: "str", Value: proto.String("text")},                                          // S
		{Name: "int32", Value: proto.Int32(42)},                                             // I
		{Name: "neg", Value: proto.Int32(-7)},                                               // I ff ff ff f9
		{Name: "int64", Value: proto.Int64L(1099511627776)},                                 // L
		{Name: "bool", Value: proto.Bool(true)},                                             // t
		{Name: "double", Value: proto.Float64(1.5)},                                         // d
		{Name: "decimal", Value: proto.DecimalValue(proto.Decimal{Scale: 2, Value: 314})},   // D 02 0000013a
		{Name: "time", Value: proto.Timestamp(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))}, // T
		{Name: "table", Value: proto.TableValue(proto.Table{ // F
			{Name: "x", Value: proto.String("y")}, // S
			{Name: "n", Value: proto.Int32(1)},    // I
		})},
		{Name: "array", Value: proto.ArrayValue( // A
			proto.Int32(1),      // I
			proto.String("two"), // S
			proto.Bool(false),   // t
			proto.Void(),        // V
		)},
		{Name: "void", Value: proto.Void()}, // V
	},
	body: "héllo wörld",
}

// checkFullMessage checks a decoded content header and body against
// fullMessage, value by value and letter by letter.
func checkFullMessage(t *testing.T, h *ContentHeader, body []byte) {
	t.Helper()
	require.Equal(t, ClassBasic, h.ClassID)
	require.Equal(t, uint64(len(fullMessage.body)), h.BodySize)
	require.Equal(t, uint64(13), h.BodySize)
	require.Equal(t, fullMessage.body, string(body))
	require.Equal(t, proto.PropertyFlags(0xfff8), h.Properties.Flags)
	require.Equal(t, uint64(1714979289), h.Properties.Timestamp)

	p, err := h.Properties.Properties()
	require.NoError(t, err)
	headers := p.Headers
	p.Headers = nil
	require.Equal(t, fullMessage.props, p)
	require.Equal(t, fullMessage.headers, headers)

	// The same, kind by kind through the accessors.
	kinds := map[string]proto.Kind{
		"str": 'S', "int32": 'I', "neg": 'I', "int64": 'L', "bool": 't', "double": 'd',
		"decimal": 'D', "time": 'T', "table": 'F', "array": 'A', "void": 'V',
	}
	require.Len(t, headers, len(kinds))
	for _, f := range headers {
		require.Equal(t, kinds[f.Name], f.Value.Kind(), f.Name)
	}
	get := func(name string) proto.Value {
		v, ok := headers.Get(name)
		require.True(t, ok, name)
		return v
	}
	s, ok := get("str").AsString()
	require.True(t, ok)
	require.Equal(t, "text", s)
	n, ok := get("int32").AsInt()
	require.True(t, ok)
	require.Equal(t, int64(42), n)
	n, ok = get("neg").AsInt()
	require.True(t, ok)
	require.Equal(t, int64(-7), n)
	n, ok = get("int64").AsInt()
	require.True(t, ok)
	require.Equal(t, int64(1099511627776), n)
	b, ok := get("bool").AsBool()
	require.True(t, ok)
	require.True(t, b)
	fl, ok := get("double").AsFloat()
	require.True(t, ok)
	require.Equal(t, 1.5, fl)
	d, ok := get("decimal").AsDecimal()
	require.True(t, ok)
	require.Equal(t, proto.Decimal{Scale: 2, Value: 314}, d)
	require.Equal(t, "3.14", d.String())
	ts, ok := get("time").AsTime()
	require.True(t, ok)
	require.Equal(t, int64(1714979289), ts.Unix())
	require.Equal(t, "2024-05-06T07:08:09Z", ts.Format(time.RFC3339))
	tbl, ok := get("table").AsTable()
	require.True(t, ok)
	require.Equal(t, map[string]any{"x": "y", "n": int32(1)}, tbl.Map())
	require.Equal(t, proto.KindString, tbl[0].Value.Kind())
	require.Equal(t, proto.KindInt32, tbl[1].Value.Kind())
	arr, ok := get("array").AsArray()
	require.True(t, ok)
	require.Equal(t, []any{int32(1), "two", false, nil}, get("array").Interface())
	require.Equal(t, []proto.Kind{'I', 'S', 't', 'V'}, []proto.Kind{arr[0].Kind(), arr[1].Kind(), arr[2].Kind(), arr[3].Kind()})
	require.True(t, get("void").IsVoid())
}

// TestRecordedFullMessage finds the fully loaded message of session-full:
// in the client's basic.publish (step 13) and in the server's basic.get-ok
// (step 19).
func TestRecordedFullMessage(t *testing.T) {
	dir := trafficDir(t)
	for _, tc := range []struct {
		file   string
		method MethodKey
	}{
		{"session-full.client.bin", MethodBasicPublish},
		{"session-full.server.bin", MethodBasicGetOK},
	} {
		t.Run(tc.file, func(t *testing.T) {
			frames, _ := decodeRecording(t, filepath.Join(dir, tc.file))
			found := 0
			for i, d := range frames {
				if d.Header == nil || d.Header.Properties.Flags != 0xfff8 {
					continue
				}
				found++
				require.Equal(t, tc.method, frames[i-1].Method.Key())
				switch m := frames[i-1].Method.(type) {
				case *BasicPublish:
					require.Equal(t, &BasicPublish{Exchange: "cap.direct", RoutingKey: "a.b"}, m)
				case *BasicGetOK:
					require.Equal(t, &BasicGetOK{DeliveryTag: 4, Exchange: "cap.direct", RoutingKey: "a.b", MessageCount: 3}, m)
				}
				require.Equal(t, FrameBody, frames[i+1].Frame.Type)
				checkFullMessage(t, d.Header, frames[i+1].Frame.Payload)

				// Building the message from the expected values gives the
				// recorded header bytes.
				p := fullMessage.props
				p.Headers = fullMessage.headers
				p.Flags = 0
				hdr, err := AppendContentHeader(nil, d.Frame.Channel, uint64(len(fullMessage.body)), &p)
				require.NoError(t, err)
				require.Equal(t, d.Raw, hdr)
			}
			require.Equal(t, 1, found, "messages with all 13 properties")
		})
	}
}

// TestRecordedLargeBody checks the 300000-byte message (step 15): three
// body frames of at most frame_max - 8 bytes that add up to body_size.
func TestRecordedLargeBody(t *testing.T) {
	dir := trafficDir(t)
	for _, file := range []string{"session-full.client.bin", "session-full.server.bin"} {
		t.Run(file, func(t *testing.T) {
			frames, _ := decodeRecording(t, filepath.Join(dir, file))
			var tuneMax uint32
			for _, d := range frames {
				switch m := d.Method.(type) {
				case *ConnectionTune:
					tuneMax = m.FrameMax
				case *ConnectionTuneOK:
					tuneMax = m.FrameMax
				}
			}
			require.Equal(t, uint32(131072), tuneMax)
			found := false
			for i, d := range frames {
				if d.Header == nil || d.Header.BodySize != 300000 {
					continue
				}
				found = true
				require.Equal(t, "content-header body_size=300000 flags=0x8000", d.Listing)
				total := 0
				var sizes []int
				for _, b := range frames[i+1 : i+4] {
					require.Equal(t, FrameBody, b.Frame.Type)
					require.LessOrEqual(t, len(b.Raw), int(tuneMax))
					sizes = append(sizes, len(b.Frame.Payload))
					total += len(b.Frame.Payload)
				}
				require.Equal(t, []int{131064, 131064, 37872}, sizes)
				require.Equal(t, 300000, total)
				require.NotEqual(t, FrameBody, frames[i+4].Frame.Type)

				// Our encoder splits the same body the same way.
				var body []byte
				for _, b := range frames[i+1 : i+4] {
					body = append(body, b.Frame.Payload...)
				}
				var raw []byte
				for _, b := range frames[i+1 : i+4] {
					raw = append(raw, b.Raw...)
				}
				require.Equal(t, raw, AppendBody(nil, d.Frame.Channel, body, tuneMax))
			}
			require.True(t, found)
		})
	}
}
