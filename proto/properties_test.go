package proto

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/internal/wire"
)

// Property lists written by hand: a 16-bit flags word (bit 15 content-type
// … bit 2 cluster-id, bit 0 continuation), then the present properties in
// flag order. Short strings carry a length octet, headers a 4-byte length.
var propertyVectors = []struct {
	name  string
	hex   string
	props Properties
	view  PropertiesView
}{
	{
		name: "none",
		hex:  "0000",
	},
	{
		name: "content-type, headers, delivery-mode",
		hex: "b000" + // 1000 0000 | 0010 0000 | 0001 0000 → 0xb000
			" 10 6170706c69636174696f6e2f6a736f6e" + // "application/json"
			" 00000007 0178 49 00000001" + // {"x": I 1}
			" 02", // persistent
		props: Properties{
			ContentType:  "application/json",
			Headers:      one("x", Int32(1)),
			DeliveryMode: Persistent,
			Flags:        FlagContentType | FlagHeaders | FlagDeliveryMode,
		},
		view: PropertiesView{
			Flags:        0xb000,
			ContentType:  []byte("application/json"),
			Headers:      RawTable{0x01, 'x', 'I', 0, 0, 0, 1},
			DeliveryMode: 2,
		},
	},
	{
		name: "all fourteen",
		hex: "fffc" +
			" 0a 746578742f706c61696e" + // content-type "text/plain"
			" 04 677a6970" + // content-encoding "gzip"
			" 00000008 0168 53 00000001 76" + // headers {"h": S "v"}
			" 01" + // delivery-mode transient
			" 09" + // priority 9
			" 02 6331" + // correlation-id "c1"
			" 15 616d712e7261626269746d712e7265706c792d746f" + // reply-to "amq.rabbitmq.reply-to"
			" 05 3630303030" + // expiration "60000"
			" 03 6d2d31" + // message-id "m-1"
			" 00000000663881d9" + // timestamp 1714979289
			" 01 74" + // type "t"
			" 05 6775657374" + // user-id "guest"
			" 03 617070" + // app-id "app"
			" 02 636c", // cluster-id "cl"
		props: Properties{
			ContentType:     "text/plain",
			ContentEncoding: "gzip",
			Headers:         one("h", String("v")),
			DeliveryMode:    Transient,
			Priority:        9,
			CorrelationID:   "c1",
			ReplyTo:         "amq.rabbitmq.reply-to",
			Expiration:      "60000",
			MessageID:       "m-1",
			Timestamp:       time.Unix(1714979289, 0).UTC(),
			Type:            "t",
			UserID:          "guest",
			AppID:           "app",
			ClusterID:       "cl",
			Flags:           AllPropertyFlags,
		},
		view: PropertiesView{
			Flags:           0xfffc,
			ContentType:     []byte("text/plain"),
			ContentEncoding: []byte("gzip"),
			Headers:         RawTable{0x01, 'h', 'S', 0, 0, 0, 1, 'v'},
			DeliveryMode:    1,
			Priority:        9,
			CorrelationID:   []byte("c1"),
			ReplyTo:         []byte("amq.rabbitmq.reply-to"),
			Expiration:      []byte("60000"),
			MessageID:       []byte("m-1"),
			Timestamp:       1714979289,
			Type:            []byte("t"),
			UserID:          []byte("guest"),
			AppID:           []byte("app"),
			ClusterID:       []byte("cl"),
		},
	},
	{
		name: "zero values present on the wire",
		hex: "8840" + // content-type, priority, timestamp
			" 00" + // content-type ""
			" 00" + // priority 0
			" 0000000000000000", // timestamp 0 (the epoch)
		props: Properties{
			Timestamp: time.Unix(0, 0).UTC(),
			Flags:     FlagContentType | FlagPriority | FlagTimestamp,
		},
		view: PropertiesView{
			Flags:       0x8840,
			ContentType: []byte{},
		},
	},
	{
		name:  "empty headers present",
		hex:   "2000 00000000",
		props: Properties{Flags: FlagHeaders},
		view:  PropertiesView{Flags: 0x2000, Headers: RawTable{}},
	},
	{
		name:  "cluster-id only",
		hex:   "0004 02 636c",
		props: Properties{ClusterID: "cl", Flags: FlagClusterID},
		view:  PropertiesView{Flags: 0x0004, ClusterID: []byte("cl")},
	},
	{
		name:  "delivery-mode and priority",
		hex:   "1800 02 05",
		props: Properties{DeliveryMode: 2, Priority: 5, Flags: FlagDeliveryMode | FlagPriority},
		view:  PropertiesView{Flags: 0x1800, DeliveryMode: 2, Priority: 5},
	},
}

func TestPropertyVectors(t *testing.T) {
	for _, tc := range propertyVectors {
		t.Run(tc.name, func(t *testing.T) {
			want := hx(t, tc.hex)

			got, err := ParseProperties(want)
			require.NoError(t, err)
			require.Equal(t, tc.props, got)

			var v PropertiesView
			require.NoError(t, v.Parse(want))
			require.Equal(t, tc.view, v)
			p, err := v.Properties()
			require.NoError(t, err)
			require.Equal(t, tc.props, p)

			// The decoded properties re-encode to the same bytes.
			enc, err := got.Append(nil)
			require.NoError(t, err)
			require.Equal(t, want, enc)
			require.Equal(t, tc.props.Flags, got.PresentFlags())

			// Append appends after existing bytes.
			enc, err = got.Append([]byte{0xaa})
			require.NoError(t, err)
			require.Equal(t, append([]byte{0xaa}, want...), enc)
		})
	}
}

func TestPropertiesEncodeWithoutFlags(t *testing.T) {
	// Non-zero fields are sent without naming them in Flags.
	p := Properties{ContentType: "application/json", Headers: one("x", Int32(1)), DeliveryMode: Persistent}
	require.Equal(t, FlagContentType|FlagHeaders|FlagDeliveryMode, p.PresentFlags())
	got, err := p.Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, propertyVectors[1].hex), got)

	// Zero fields are not sent unless forced by Flags.
	got, err = (&Properties{}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "0000"), got)
	got, err = (&Properties{Headers: Table{}}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "0000"), got, "empty headers are not sent")

	got, err = (&Properties{Flags: FlagPriority | FlagContentType}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "8800 00 00"), got)

	// A forced timestamp with a zero time is sent as the epoch.
	got, err = (&Properties{Flags: FlagTimestamp}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "0040 0000000000000000"), got)

	// Bits 1 and 0 of Flags are never sent.
	got, err = (&Properties{Flags: 0x0003, Priority: 1}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "0800 01"), got)

	// Timestamps are whole seconds; the zone does not matter.
	got, err = (&Properties{Timestamp: time.Date(2024, 5, 6, 9, 8, 9, 999_999_999, time.FixedZone("X", 7200))}).Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, "0040 00000000663881d9"), got)

	// All fourteen, built from values only.
	all := propertyVectors[2].props
	all.Flags = 0
	require.Equal(t, AllPropertyFlags, all.PresentFlags())
	got, err = all.Append(nil)
	require.NoError(t, err)
	require.Equal(t, hx(t, propertyVectors[2].hex), got)
}

func TestPropertiesContinuation(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want Properties
	}{
		{"one empty continuation word", "8001 0000 04 74657874", Properties{ContentType: "text", Flags: FlagContentType}},
		{"continuation, no properties", "0001 0000", Properties{}},
		{"chained continuation words", "0801 0001 0001 0000 07", Properties{Priority: 7, Flags: FlagPriority}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProperties(hx(t, tc.hex))
			require.NoError(t, err)
			require.Equal(t, tc.want, p)
			// Re-encoding drops the empty continuation words.
			out, err := p.Append(nil)
			require.NoError(t, err)
			in := hx(t, tc.hex)
			require.Equal(t, []byte{in[0], in[1] &^ 1}, out[:2])
		})
	}
}

func TestPropertiesMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
	}{
		{"empty", ""},
		{"one byte", "80"},
		{"bit 1 set", "0002"},
		{"bit 1 set with content-type", "8002 00"},
		{"bit 1 and continuation", "0003 0000"},
		{"continuation word names a property", "0001 8000 00"},
		{"continuation word names bit 1", "0001 0002"},
		{"second continuation word names a property", "0001 0001 0004"},
		{"continuation word missing", "8001"},
		{"continuation word truncated", "0001 00"},
		{"chained continuation word missing", "0001 0001"},
		{"content-type missing", "8000"},
		{"content-type truncated", "8000 05 6162"},
		{"content-encoding truncated", "4000 01"},
		{"headers length truncated", "2000 0000"},
		{"headers longer than input", "2000 00000005 0161 56"},
		{"headers length 2^32-1", "2000 ffffffff"},
		{"delivery-mode missing", "1000"},
		{"priority missing", "0800"},
		{"delivery-mode present, priority missing", "1800 02"},
		{"correlation-id truncated", "0400 03 6162"},
		{"reply-to missing", "0200"},
		{"expiration truncated", "0100 05"},
		{"message-id truncated", "0080 02 61"},
		{"timestamp seven octets", "0040 00000000663881"},
		{"type missing", "0020"},
		{"user-id truncated", "0010 05 6775"},
		{"app-id missing", "0008"},
		{"cluster-id truncated", "0004 02 63"},
		{"trailing byte after none", "0000 ff"},
		{"trailing byte after delivery-mode", "1000 02 ff"},
		{"trailing bytes after all", propertyVectors[2].hex + " 0000"},
		{"trailing continuation word", "0000 0000"},
		{"headers body malformed", "2000 00000002 0161"},
		{"headers body unknown type", "2000 00000003 0161 5a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := hx(t, tc.hex)
			p, err := ParseProperties(in)
			require.ErrorIs(t, err, ErrMalformedProperties)
			require.Equal(t, Properties{}, p)
		})
	}

	// The view parses lazily: headers bodies are only checked when decoded,
	// and that error says both what was malformed and where.
	var v PropertiesView
	require.NoError(t, v.Parse(hx(t, "2000 00000002 0161")))
	_, err := v.Properties()
	require.ErrorIs(t, err, ErrMalformedProperties)
	require.ErrorIs(t, err, ErrMalformedTable)
	_, err = v.Headers.Decode()
	require.ErrorIs(t, err, ErrMalformedTable)

	// Headers nested too deeply report ErrTooDeep through ParseProperties.
	deep := nestedTableBytes(MaxNestingDepth)
	_, err = ParseProperties(append(hx(t, "2000"), deep...))
	require.ErrorIs(t, err, ErrTooDeep)
	require.ErrorIs(t, err, ErrMalformedProperties)

	// Every strict prefix of every valid vector is rejected.
	for _, tc := range propertyVectors {
		full := hx(t, tc.hex)
		for k := 0; k < len(full); k++ {
			_, err := ParseProperties(full[:k])
			require.ErrorIs(t, err, ErrMalformedProperties, "%s: prefix %d", tc.name, k)
			var v PropertiesView
			require.ErrorIs(t, v.Parse(full[:k]), ErrMalformedProperties, "%s: prefix %d", tc.name, k)
		}
	}
}

func TestPropertiesViewParseResets(t *testing.T) {
	v := PropertiesView{ContentType: []byte("stale"), Priority: 3, Flags: FlagPriority}
	require.NoError(t, v.Parse(hx(t, "0004 02 636c")))
	require.Equal(t, PropertiesView{Flags: FlagClusterID, ClusterID: []byte("cl")}, v)
}

func TestPropertiesViewAliasesInput(t *testing.T) {
	in := hx(t, propertyVectors[2].hex)
	var v PropertiesView
	require.NoError(t, v.Parse(in))
	p, err := v.Properties()
	require.NoError(t, err)
	in[3] = 'T' // the 't' of "text/plain"
	require.Equal(t, []byte("Text/plain"), v.ContentType, "the view aliases its buffer")
	require.Equal(t, "text/plain", p.ContentType, "Properties owns its memory")
	h, _ := p.Headers.Get("h")
	require.Equal(t, String("v"), h)
}

func TestPropertiesShortStringTooLong(t *testing.T) {
	long := strings.Repeat("x", 256)
	ok := strings.Repeat("x", 255)
	setters := map[string]func(*Properties, string){
		"content-type":     func(p *Properties, s string) { p.ContentType = s },
		"content-encoding": func(p *Properties, s string) { p.ContentEncoding = s },
		"correlation-id":   func(p *Properties, s string) { p.CorrelationID = s },
		"reply-to":         func(p *Properties, s string) { p.ReplyTo = s },
		"expiration":       func(p *Properties, s string) { p.Expiration = s },
		"message-id":       func(p *Properties, s string) { p.MessageID = s },
		"type":             func(p *Properties, s string) { p.Type = s },
		"user-id":          func(p *Properties, s string) { p.UserID = s },
		"app-id":           func(p *Properties, s string) { p.AppID = s },
		"cluster-id":       func(p *Properties, s string) { p.ClusterID = s },
	}
	for name, set := range setters {
		t.Run(name, func(t *testing.T) {
			base := propertyVectors[2].props // every property set

			p := base
			set(&p, ok)
			b, err := p.Append(nil)
			require.NoError(t, err, "255 bytes fit")
			back, err := ParseProperties(b)
			require.NoError(t, err)
			require.Equal(t, p, back)

			p = base
			set(&p, long)
			dst := make([]byte, 3, 1024)
			copy(dst, "pre")
			out, err := p.Append(dst)
			require.ErrorIs(t, err, wire.ErrShortStringTooLong)
			require.Contains(t, err.Error(), name)
			require.Equal(t, []byte("pre"), out, "dst unchanged on error")
			require.Equal(t, 3, len(out))

			// Also when it is the only property.
			var q Properties
			set(&q, long)
			out, err = q.Append(nil)
			require.ErrorIs(t, err, wire.ErrShortStringTooLong)
			require.Empty(t, out)
		})
	}

	// Unencodable headers fail the same way.
	p := Properties{ContentType: "a", Headers: one(strings.Repeat("n", 256), Void())}
	out, err := p.Append([]byte("pre"))
	require.ErrorIs(t, err, wire.ErrShortStringTooLong)
	require.Contains(t, err.Error(), "headers")
	require.Equal(t, []byte("pre"), out)
}

func TestRawTableDecode(t *testing.T) {
	tab, err := RawTable(hx(t, "0161 42 01")).Decode()
	require.NoError(t, err)
	require.Equal(t, one("a", Uint8(1)), tab)
	tab, err = RawTable(nil).Decode()
	require.NoError(t, err)
	require.Nil(t, tab)
}

func TestPropertyFlagConstants(t *testing.T) {
	// Wire order from the spec's basic class: bit 15 down to bit 2.
	flags := []PropertyFlags{
		FlagContentType, FlagContentEncoding, FlagHeaders, FlagDeliveryMode, FlagPriority,
		FlagCorrelationID, FlagReplyTo, FlagExpiration, FlagMessageID, FlagTimestamp,
		FlagType, FlagUserID, FlagAppID, FlagClusterID,
	}
	var all PropertyFlags
	for i, f := range flags {
		require.Equal(t, PropertyFlags(1)<<(15-i), f)
		all |= f
	}
	require.Equal(t, AllPropertyFlags, all)
	require.Equal(t, uint8(1), Transient)
	require.Equal(t, uint8(2), Persistent)
}

// The wire timestamp that lands on Go's zero time (0001-01-01) still
// re-encodes to the same bytes instead of reading as "unset".
func TestPropertiesYearOneTimestampRoundTrips(t *testing.T) {
	wire := []byte{0x00, 0x40, 0xFF, 0xFF, 0xFF, 0xF1, 0x88, 0x6E, 0x09, 0x00}
	p, err := ParseProperties(wire)
	require.NoError(t, err)
	out, err := p.Append(nil)
	require.NoError(t, err)
	require.Equal(t, wire, out)
}
