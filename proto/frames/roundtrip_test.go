package frames

import (
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	fuzz "github.com/google/gofuzz"
	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// randShortString returns 0 to 255 random bytes, mostly few.
func randShortString(r *rand.Rand) string {
	var n int
	switch r.Intn(6) {
	case 0:
		return ""
	case 1:
		n = 255 - r.Intn(3) // at and near the limit
	default:
		n = r.Intn(24)
	}
	b := make([]byte, n)
	r.Read(b)
	return string(b)
}

// randLongString returns a string that only a longstr can carry, up to
// past the 16-bit boundary.
func randLongString(r *rand.Rand) string {
	n := 256 + r.Intn(2000)
	if r.Intn(10) == 0 {
		n = 65530 + r.Intn(20)
	}
	b := make([]byte, n)
	r.Read(b)
	return string(b)
}

// fieldKinds is every field-value type letter.
var fieldKinds = []proto.Kind{
	proto.KindBool, proto.KindInt8, proto.KindUint8, proto.KindInt16, proto.KindUint16,
	proto.KindInt32, proto.KindUint32, proto.KindInt64, proto.KindInt64L, proto.KindFloat32,
	proto.KindFloat64, proto.KindDecimal, proto.KindString, proto.KindBytes, proto.KindArray,
	proto.KindTimestamp, proto.KindTable, proto.KindVoid,
}

// randValue returns a random value of kind k. Nested tables and arrays
// stop at depth 3; empty ones are nil, as the decoder returns them.
func randValue(r *rand.Rand, k proto.Kind, depth int) proto.Value {
	switch k {
	case proto.KindBool:
		return proto.Bool(r.Intn(2) == 1)
	case proto.KindInt8:
		return proto.Int8(int8(r.Uint32()))
	case proto.KindUint8:
		return proto.Uint8(uint8(r.Uint32()))
	case proto.KindInt16:
		return proto.Int16(int16(r.Uint32()))
	case proto.KindUint16:
		return proto.Uint16(uint16(r.Uint32()))
	case proto.KindInt32:
		return proto.Int32(int32(r.Uint32()))
	case proto.KindUint32:
		return proto.Uint32(r.Uint32())
	case proto.KindInt64:
		return proto.Int64(int64(r.Uint64()))
	case proto.KindInt64L:
		return proto.Int64L(int64(r.Uint64()))
	case proto.KindFloat32:
		return proto.Float32(math.Float32frombits(r.Uint32()))
	case proto.KindFloat64:
		return proto.Float64(math.Float64frombits(r.Uint64()))
	case proto.KindDecimal:
		return proto.DecimalValue(proto.Decimal{Scale: uint8(r.Uint32()), Value: int32(r.Uint32())})
	case proto.KindString:
		if r.Intn(20) == 0 {
			return proto.String(randLongString(r))
		}
		return proto.String(randShortString(r))
	case proto.KindBytes:
		return proto.Bytes([]byte(randShortString(r)))
	case proto.KindTimestamp:
		return proto.Timestamp(time.Unix(r.Int63n(1<<40), 0))
	case proto.KindVoid:
		return proto.Void()
	case proto.KindTable:
		if depth >= 3 {
			return proto.TableValue(nil)
		}
		return proto.TableValue(randTable(r, depth+1))
	case proto.KindArray:
		if depth >= 3 {
			return proto.ArrayValue()
		}
		n := r.Intn(5)
		var vs []proto.Value
		for i := 0; i < n; i++ {
			vs = append(vs, randValue(r, fieldKinds[r.Intn(len(fieldKinds))], depth+1))
		}
		return proto.ArrayValue(vs...)
	}
	panic("unknown kind " + k.String())
}

// randTable returns a random table, nil when empty.
func randTable(r *rand.Rand, depth int) proto.Table {
	n := r.Intn(6)
	if depth == 0 && r.Intn(4) == 0 {
		n = len(fieldKinds) // one of every kind
	}
	var t proto.Table
	for i := 0; i < n; i++ {
		k := fieldKinds[r.Intn(len(fieldKinds))]
		if n == len(fieldKinds) {
			k = fieldKinds[i]
		}
		t = append(t, proto.Field{Name: randShortString(r), Value: randValue(r, k, depth)})
	}
	return t
}

func newFuzzer(seed int64) *fuzz.Fuzzer {
	return fuzz.NewWithSeed(seed).NilChance(0).Funcs(
		func(s *string, c fuzz.Continue) { *s = randShortString(c.Rand) },
		func(t *proto.Table, c fuzz.Continue) {
			if c.Intn(4) == 0 {
				*t = nil
				return
			}
			*t = randTable(c.Rand, 0)
		},
		func(t *time.Time, c fuzz.Continue) {
			switch c.Intn(4) {
			case 0:
				*t = time.Time{}
			case 1:
				*t = time.Unix(-c.Int63n(1<<35), 0).UTC() // before 1970
			default:
				*t = time.Unix(c.Int63n(1<<35), 0).UTC()
			}
		},
	)
}

// longStringFields returns the indexes of m's string fields that are long
// strings: those that accept more than 255 bytes.
func longStringFields(t *testing.T, k MethodKey) []int {
	var idx []int
	typ := reflect.TypeOf(NewMethod(k)).Elem()
	for i := 0; i < typ.NumField(); i++ {
		if typ.Field(i).Type.Kind() != reflect.String {
			continue
		}
		m := NewMethod(k)
		reflect.ValueOf(m).Elem().Field(i).SetString(strings.Repeat("l", 256))
		if _, err := AppendMethod(nil, 0, m); err == nil {
			idx = append(idx, i)
		}
	}
	return idx
}

// TestMethodRoundTrip fills every method with random values and checks
// that it survives encoding and decoding by both decoders unchanged.
func TestMethodRoundTrip(t *testing.T) {
	const iterations = 300
	var p Parser // shared by all methods: its cache and interner get reused
	long := map[string][]int{}
	for _, k := range Methods() {
		long[k.String()] = longStringFields(t, k)
	}
	// The long strings the protocol has, found by probing.
	require.Equal(t, map[string][]int{
		"connection.start":         {3, 4}, // mechanisms, locales
		"connection.start-ok":      {2},    // response
		"connection.secure":        {0},    // challenge
		"connection.secure-ok":     {0},    // response
		"connection.update-secret": {0},    // new-secret
		"channel.open-ok":          {0},    // reserved-1
	}, func() map[string][]int {
		out := map[string][]int{}
		for k, v := range long {
			if len(v) > 0 {
				out[k] = v
			}
		}
		return out
	}())

	for ki, k := range Methods() {
		t.Run(k.String(), func(t *testing.T) {
			f := newFuzzer(int64(ki) + 1)
			rng := rand.New(rand.NewSource(int64(ki) + 1000))
			var buf []byte
			for i := 0; i < iterations; i++ {
				m := NewMethod(k)
				f.Fuzz(m)
				for _, fi := range long[k.String()] {
					if rng.Intn(3) == 0 {
						reflect.ValueOf(m).Elem().Field(fi).SetString(randLongString(rng))
					}
				}
				ch := uint16(rng.Uint32())

				var err error
				buf, err = AppendMethod(buf[:0], ch, m)
				require.NoError(t, err)
				fr, n, err := ReadFrame(buf, 0)
				require.NoError(t, err)
				require.Equal(t, len(buf), n)
				require.Equal(t, FrameMethod, fr.Type)
				require.Equal(t, ch, fr.Channel)

				got, err := p.ParseMethod(fr.Channel, fr.Payload)
				require.NoError(t, err)
				require.Equal(t, m, got, "Parser, iteration %d", i)

				got, err = DecodeMethod(fr.Channel, fr.Payload)
				require.NoError(t, err)
				require.Equal(t, m, got, "DecodeMethod, iteration %d", i)

				// A strict prefix of the payload is a clean error, never
				// a panic or a success: decoding reads the same fields in
				// the same order and runs out of bytes.
				cut := rng.Intn(len(fr.Payload))
				_, err = DecodeMethod(fr.Channel, fr.Payload[:cut])
				require.Error(t, err, "payload cut to %d of %d bytes", cut, len(fr.Payload))
			}
		})
	}
}

// TestContentHeaderRoundTrip fills Properties with random values and checks
// that a content header carries them unchanged.
func TestContentHeaderRoundTrip(t *testing.T) {
	f := newFuzzer(42)
	rng := rand.New(rand.NewSource(43))
	var buf []byte
	var h ContentHeader
	for i := 0; i < 3000; i++ {
		var p proto.Properties
		f.Fuzz(&p)
		switch rng.Intn(4) {
		case 0:
			p.Flags = 0
		case 1:
			p.Flags = proto.AllPropertyFlags
		}
		ch := uint16(rng.Uint32())
		bodySize := rng.Uint64()

		var err error
		buf, err = AppendContentHeader(buf[:0], ch, bodySize, &p)
		require.NoError(t, err)
		fr, n, err := ReadFrame(buf, 0)
		require.NoError(t, err)
		require.Equal(t, len(buf), n)
		require.Equal(t, FrameHeader, fr.Type)
		require.Equal(t, ch, fr.Channel)

		require.NoError(t, h.Parse(fr.Channel, fr.Payload))
		require.Equal(t, ClassBasic, h.ClassID)
		require.Equal(t, bodySize, h.BodySize)
		got, err := h.Properties.Properties()
		require.NoError(t, err)

		want := p
		want.Flags = p.PresentFlags()
		if len(want.Headers) == 0 {
			want.Headers = nil
		}
		if want.Flags&proto.FlagTimestamp != 0 && p.Timestamp.IsZero() {
			want.Timestamp = time.Unix(0, 0).UTC() // a forced zero timestamp is sent as 0
		}
		require.Equal(t, want, got, "iteration %d", i)
		require.Equal(t, want.Flags, h.Properties.Flags)

		// The decoded properties re-encode to the same bytes.
		again, err := AppendContentHeader(nil, ch, bodySize, &got)
		require.NoError(t, err)
		require.Equal(t, buf, again)

		// ParseProperties agrees with the view.
		pp, err := proto.ParseProperties(fr.Payload[12:])
		require.NoError(t, err)
		require.Equal(t, got, pp)
	}
}

// TestTableRoundTrip runs random tables through a method argument, with
// every value kind at every nesting level up to three.
func TestTableRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	var p Parser
	for i := 0; i < 2000; i++ {
		args := randTable(rng, 0)
		m := &BasicConsume{Queue: "q", Arguments: args}
		b, err := AppendMethod(nil, 1, m)
		require.NoError(t, err)
		got, err := p.ParseMethod(1, b[FrameHeaderSize:len(b)-1])
		require.NoError(t, err)
		require.Equal(t, args, got.(*BasicConsume).Arguments)
	}
}

// The Parser reuses one struct per method: parsing a second message must
// not leave anything of the first one behind.
func TestParserReuse(t *testing.T) {
	var p Parser
	first, err := AppendMethodArgs(nil, &BasicDeliver{ConsumerTag: "a", DeliveryTag: 1, Exchange: "x", RoutingKey: "k"})
	require.NoError(t, err)
	second, err := AppendMethodArgs(nil, &BasicDeliver{ConsumerTag: "b", DeliveryTag: 2})
	require.NoError(t, err)

	m1, err := p.ParseMethod(1, first)
	require.NoError(t, err)
	tag := m1.(*BasicDeliver).ConsumerTag
	m2, err := p.ParseMethod(1, second)
	require.NoError(t, err)
	require.Equal(t, &BasicDeliver{ConsumerTag: "b", DeliveryTag: 2}, m2)
	require.Same(t, m1, m2, "the Parser reuses its struct for a streamed method")
	// Strings handed out before stay valid.
	require.Equal(t, "a", tag)

	// A failed parse does not break the next one.
	_, err = p.ParseMethod(1, first[:len(first)-1])
	require.Error(t, err)
	m3, err := p.ParseMethod(1, first)
	require.NoError(t, err)
	require.Equal(t, "a", m3.(*BasicDeliver).ConsumerTag)

	// Other methods get a struct of their own, and keep their tables.
	declare, err := AppendMethodArgs(nil, &QueueDeclare{Queue: "a", Durable: true, Arguments: proto.Table{{Name: "k", Value: proto.Int32(1)}}})
	require.NoError(t, err)
	q1, err := p.ParseMethod(1, declare)
	require.NoError(t, err)
	q2, err := p.ParseMethod(1, declare)
	require.NoError(t, err)
	require.NotSame(t, q1, q2)
	require.Equal(t, proto.Table{{Name: "k", Value: proto.Int32(1)}}, q1.(*QueueDeclare).Arguments)

	// DecodeMethod returns a new struct every time.
	d1, err := DecodeMethod(1, first)
	require.NoError(t, err)
	d2, err := DecodeMethod(1, first)
	require.NoError(t, err)
	require.NotSame(t, d1, d2)
}

func TestInterner(t *testing.T) {
	var in Interner
	a := in.String([]byte("exchange"))
	b := in.String([]byte("exchange"))
	require.Equal(t, "exchange", a)
	require.Equal(t, unsafeStringData(a), unsafeStringData(b), "the second lookup returns the stored string")
	require.Equal(t, "", in.String(nil))

	var nilIn *Interner
	require.Equal(t, "x", nilIn.String([]byte("x")))

	// Bounded: many distinct strings keep working.
	for i := 0; i < 5000; i++ {
		s := strings.Repeat("k", i%200) + string(rune('a'+i%26)) + string(rune(i))
		require.Equal(t, s, in.String([]byte(s)))
	}
	require.LessOrEqual(t, len(in.m), internMaxEntries)

	// Strings served from the recent few and from the table alike are
	// the right ones, whatever the order and however similar they are.
	words := []string{"q", "q1", "q2", "amq.ctag-1", "amq.ctag-2", "q", "routing", "q1", "x", "amq.ctag-1"}
	for round := range 3 {
		for i, w := range words {
			got := in.String([]byte(w))
			require.Equal(t, w, got, "round %d, word %d", round, i)
			require.Equal(t, unsafeStringData(in.String([]byte(w))), unsafeStringData(got), "the same stored string")
		}
	}
}

func unsafeStringData(s string) *byte { return unsafe.StringData(s) }
