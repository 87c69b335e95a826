package proto

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"

	fuzz "github.com/google/gofuzz"
	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/internal/wire"
)

const (
	roundTripIterations = 2000
	// genMaxDepth bounds how deeply generated tables and arrays nest; far
	// below MaxNestingDepth so every generated value is encodable.
	genMaxDepth = 4
)

// allKinds lists every field-value letter; the generator picks uniformly.
var allKinds = []Kind{
	KindBool, KindInt8, KindUint8, KindInt16, KindUint16, KindInt32, KindUint32,
	KindInt64, KindInt64L, KindFloat32, KindFloat64, KindDecimal, KindString,
	KindBytes, KindArray, KindTimestamp, KindTable, KindVoid,
}

// gen holds the custom gofuzz functions. depth counts the tables and
// arrays being generated around the current value (a Fuzzer runs on one
// goroutine, so a plain counter is enough).
type gen struct {
	depth int
	kinds map[Kind]int // how often each kind was generated
}

func newFuzzer(t testing.TB, seed int64) (*fuzz.Fuzzer, *gen) {
	t.Logf("gofuzz seed %d", seed)
	g := &gen{kinds: map[Kind]int{}}
	f := fuzz.NewWithSeed(seed).NilChance(0.2).NumElements(0, 4).Funcs(
		g.value,
		g.table,
		g.properties,
		g.string,
	)
	return f, g
}

var sampleStrings = []string{
	"héllo wörld",
	"日本語のテキスト",
	"emoji 🐇🥕",
	"\x00\xff\xfe not UTF-8",
	"application/json",
	"Ω≈ç√∫˜µ≤≥÷",
	"\u202e right-to-left",
}

// string is the custom generator for every string gofuzz fills: empty,
// gofuzz's own random Unicode, fixed non-ASCII samples, raw bytes (not
// UTF-8), or long text (hundreds of bytes, over the short-string limit).
func (g *gen) string(s *string, c fuzz.Continue) {
	switch c.Intn(7) {
	case 0:
		*s = ""
	case 1, 2:
		*s = c.RandString()
	case 3:
		*s = sampleStrings[c.Intn(len(sampleStrings))]
	case 4:
		b := make([]byte, c.Intn(40))
		_, _ = c.Read(b)
		*s = string(b)
	case 5:
		*s = strings.Repeat(sampleStrings[c.Intn(len(sampleStrings))], 10+c.Intn(40))
	default:
		*s = c.RandString() + sampleStrings[c.Intn(len(sampleStrings))]
	}
}

// shortString returns a random string of at most 255 bytes, sometimes
// exactly 255.
func (g *gen) shortString(c fuzz.Continue) string {
	var s string
	c.Fuzz(&s)
	if c.Intn(10) == 0 {
		s = strings.Repeat(s+"é", 300)
	}
	if len(s) > 255 {
		if c.RandBool() {
			s = s[:255]
		} else {
			s = s[:c.Intn(256)]
		}
	}
	return s
}

func (g *gen) value(v *Value, c fuzz.Continue) {
	k := allKinds[c.Intn(len(allKinds))]
	g.kinds[k]++
	switch k {
	case KindBool:
		*v = Bool(c.RandBool())
	case KindInt8:
		var x int8
		c.Fuzz(&x)
		*v = Int8(x)
	case KindUint8:
		var x uint8
		c.Fuzz(&x)
		*v = Uint8(x)
	case KindInt16:
		var x int16
		c.Fuzz(&x)
		*v = Int16(x)
	case KindUint16:
		var x uint16
		c.Fuzz(&x)
		*v = Uint16(x)
	case KindInt32:
		var x int32
		c.Fuzz(&x)
		*v = Int32(x)
	case KindUint32:
		var x uint32
		c.Fuzz(&x)
		*v = Uint32(x)
	case KindInt64:
		var x int64
		c.Fuzz(&x)
		*v = Int64(x)
	case KindInt64L:
		var x int64
		c.Fuzz(&x)
		*v = Int64L(x)
	case KindFloat32:
		specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, math.SmallestNonzeroFloat32}
		if c.Intn(4) == 0 {
			*v = Float32(specials[c.Intn(len(specials))])
		} else {
			*v = Float32(math.Float32frombits(c.Uint32())) // any bit pattern, NaNs included
		}
	case KindFloat64:
		specials := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, math.SmallestNonzeroFloat64}
		if c.Intn(4) == 0 {
			*v = Float64(specials[c.Intn(len(specials))])
		} else {
			*v = Float64(math.Float64frombits(c.RandUint64()))
		}
	case KindDecimal:
		*v = DecimalValue(Decimal{Scale: uint8(c.Intn(256)), Value: int32(c.Uint32())})
	case KindString:
		var s string
		c.Fuzz(&s)
		*v = String(s)
	case KindBytes:
		var b []byte
		if c.Intn(5) != 0 {
			b = make([]byte, c.Intn(64))
			_, _ = c.Read(b)
		}
		*v = Bytes(b)
	case KindTimestamp:
		// Whole seconds; negative ones become the epoch in Timestamp.
		sec := c.Int63n(1<<40) - (1 << 32)
		*v = Timestamp(time.Unix(sec, 0))
	case KindArray:
		if g.depth >= genMaxDepth {
			*v = ArrayValue()
			return
		}
		g.depth++
		defer func() { g.depth-- }()
		n := c.Intn(5)
		var elems []Value
		if n > 0 || c.RandBool() {
			elems = make([]Value, n) // sometimes a non-nil empty array
		}
		for i := range elems {
			c.Fuzz(&elems[i])
		}
		*v = ArrayValue(elems...)
	case KindTable:
		if g.depth >= genMaxDepth {
			*v = TableValue(nil)
			return
		}
		g.depth++
		defer func() { g.depth-- }()
		var t Table
		c.Fuzz(&t)
		*v = TableValue(t)
	case KindVoid:
		if c.RandBool() {
			*v = Void()
		} else {
			*v = Value{} // the zero Value, which is also void
		}
	}
}

func (g *gen) table(t *Table, c fuzz.Continue) {
	n := c.Intn(6)
	if n == 0 {
		if c.RandBool() {
			*t = nil
		} else {
			*t = Table{}
		}
		return
	}
	out := make(Table, n)
	for i := range out {
		out[i].Name = g.shortString(c)
		c.Fuzz(&out[i].Value)
	}
	if n > 1 && c.Intn(8) == 0 {
		out[n-1].Name = out[0].Name // duplicate names are legal and kept
	}
	*t = out
}

func (g *gen) properties(p *Properties, c fuzz.Continue) {
	str := func() string {
		if c.Intn(3) == 0 {
			return ""
		}
		return g.shortString(c)
	}
	octet := func() uint8 {
		if c.Intn(3) == 0 {
			return 0
		}
		var x uint8
		c.Fuzz(&x)
		return x
	}
	var headers Table
	if c.RandBool() {
		for len(headers) == 0 {
			c.Fuzz(&headers)
		}
	}
	var ts time.Time
	if c.Intn(3) != 0 {
		ts = time.Unix(c.Int63n(1<<40)-(1<<33), 0).UTC() // before 1970 too
	}
	var flags uint16
	c.Fuzz(&flags)
	*p = Properties{
		ContentType:     str(),
		ContentEncoding: str(),
		Headers:         headers,
		DeliveryMode:    octet(),
		Priority:        octet(),
		CorrelationID:   str(),
		ReplyTo:         str(),
		Expiration:      str(),
		MessageID:       str(),
		Timestamp:       ts,
		Type:            str(),
		UserID:          str(),
		AppID:           str(),
		ClusterID:       str(),
		Flags:           PropertyFlags(flags),
	}
}

// normValue is what v decodes as. The format (and this decoder) is
// canonical in three ways:
//   - void has one representation, the zero Value (Void() returns it),
//     so this case is a no-op kept to document the rule;
//   - an empty table or array has no elements on the wire and decodes as a
//     nil Table or nil []Value, whether the input was nil or empty;
//   - nested values are normalised the same way.
func normValue(v Value) Value {
	switch v.Kind() {
	case KindVoid:
		return Void()
	case KindTable:
		t, _ := v.AsTable()
		return TableValue(normTable(t))
	case KindArray:
		a, _ := v.AsArray()
		if len(a) == 0 {
			return ArrayValue()
		}
		out := make([]Value, len(a))
		for i, e := range a {
			out[i] = normValue(e)
		}
		return ArrayValue(out...)
	}
	return v
}

func normTable(t Table) Table {
	if len(t) == 0 {
		return nil
	}
	out := make(Table, len(t))
	for i, f := range t {
		out[i] = Field{Name: f.Name, Value: normValue(f.Value)}
	}
	return out
}

// normProperties is what p decodes as: Flags becomes exactly the
// properties sent (PresentFlags), headers are normalised like any table
// (empty headers are nil), and a zero Timestamp forced onto the wire by
// Flags is sent as 0 and so decodes as the epoch.
func normProperties(p Properties) Properties {
	q := p
	q.Flags = p.PresentFlags()
	q.Headers = normTable(p.Headers)
	if q.Flags&FlagTimestamp != 0 && p.Timestamp.IsZero() {
		q.Timestamp = time.Unix(0, 0).UTC()
	}
	return q
}

func TestZeroValueEncodesAsVoid(t *testing.T) {
	b, err := AppendTable(nil, one("k", Value{}))
	require.NoError(t, err)
	require.Equal(t, hx(t, "00000003 016b 56"), b)
	dec, _, err := ReadTable(b)
	require.NoError(t, err)
	require.Equal(t, one("k", Void()), dec)
	require.Equal(t, one("k", Value{}), dec, "the decoded void is the zero Value")
	require.True(t, dec[0].Value.IsVoid())
}

func TestRoundTripTables(t *testing.T) {
	f, g := newFuzzer(t, time.Now().UnixNano())
	for i := 0; i < roundTripIterations; i++ {
		var tab Table
		f.Fuzz(&tab)

		b, err := AppendTable(nil, tab)
		require.NoError(t, err, "iteration %d", i)
		fields, err := AppendTableFields(nil, tab)
		require.NoError(t, err)
		require.True(t, bytes.Equal(b[4:], fields), "AppendTableFields is AppendTable without the length")

		want := normTable(tab)
		dec, n, err := ReadTable(b)
		require.NoError(t, err, "iteration %d", i)
		require.Equal(t, len(b), n)
		require.Equal(t, want, dec, "iteration %d", i)

		dec2, err := DecodeTableFields(b[4:])
		require.NoError(t, err)
		require.Equal(t, want, dec2)

		// Decoded tables re-encode to the same bytes.
		again, err := AppendTable(nil, dec)
		require.NoError(t, err)
		require.Equal(t, b, again)
	}
	for _, k := range allKinds {
		require.Positive(t, g.kinds[k], "kind %v never generated", k)
	}
}

func TestRoundTripValues(t *testing.T) {
	f, g := newFuzzer(t, time.Now().UnixNano())
	for i := 0; i < roundTripIterations; i++ {
		var v Value
		f.Fuzz(&v)
		want := normValue(v)

		// As a table field.
		b, err := AppendTable(nil, one("v", v))
		require.NoError(t, err)
		dec, _, err := ReadTable(b)
		require.NoError(t, err)
		require.Len(t, dec, 1)
		require.Equal(t, want, dec[0].Value, "iteration %d: %v", i, v)
		require.Equal(t, v.Kind(), dec[0].Value.Kind())

		// As an array element, next to a void.
		b, err = AppendTable(nil, one("a", ArrayValue(v, Void())))
		require.NoError(t, err)
		dec, _, err = ReadTable(b)
		require.NoError(t, err)
		require.Equal(t, one("a", ArrayValue(want, Void())), dec)

		// Scalars survive Interface and ValueOf, except that 'L' comes
		// back as 'l' (documented) and the zero Value as Void().
		switch k := v.Kind(); k {
		case KindTable, KindArray:
		default:
			back, err := ValueOf(v.Interface())
			require.NoError(t, err)
			if k == KindInt64L {
				n, _ := v.AsInt()
				want = Int64(n)
			}
			require.Equal(t, want, back, "%v", v)
		}

		// Accessors agree with the decoded value.
		if n, ok := v.AsInt(); ok {
			m, ok := dec[0].Value.AsArray()
			require.True(t, ok)
			got, ok := m[0].AsInt()
			require.True(t, ok)
			require.Equal(t, n, got)
		}
	}
	for _, k := range allKinds {
		// Uniform choice: each kind near 1/18 of the top-level values (plus
		// nested ones); a generous lower bound catches a skewed generator.
		require.Greater(t, g.kinds[k], roundTripIterations/18/2, "kind %v", k)
	}
}

func TestRoundTripProperties(t *testing.T) {
	f, _ := newFuzzer(t, time.Now().UnixNano())
	prefix := []byte("prefix")
	for i := 0; i < roundTripIterations; i++ {
		var p Properties
		f.Fuzz(&p)
		want := normProperties(p)

		b, err := p.Append(bytes.Clone(prefix))
		require.NoError(t, err, "iteration %d", i)
		require.Equal(t, prefix, b[:len(prefix)])
		b = b[len(prefix):]
		require.Equal(t, uint16(p.PresentFlags()), uint16(b[0])<<8|uint16(b[1]))

		got, err := ParseProperties(b)
		require.NoError(t, err, "iteration %d", i)
		require.Equal(t, want, got, "iteration %d", i)
		require.Equal(t, p.PresentFlags(), got.Flags)

		var v PropertiesView
		require.NoError(t, v.Parse(b))
		require.Equal(t, p.PresentFlags(), v.Flags)
		fromView, err := v.Properties()
		require.NoError(t, err)
		require.Equal(t, want, fromView)

		again, err := got.Append(nil)
		require.NoError(t, err)
		require.Equal(t, b, again, "decoded properties re-encode to the same bytes")
	}
}

func TestPropertiesLongShortStringsFuzz(t *testing.T) {
	f, _ := newFuzzer(t, time.Now().UnixNano())
	fields := []func(*Properties) *string{
		func(p *Properties) *string { return &p.ContentType },
		func(p *Properties) *string { return &p.ContentEncoding },
		func(p *Properties) *string { return &p.CorrelationID },
		func(p *Properties) *string { return &p.ReplyTo },
		func(p *Properties) *string { return &p.Expiration },
		func(p *Properties) *string { return &p.MessageID },
		func(p *Properties) *string { return &p.Type },
		func(p *Properties) *string { return &p.UserID },
		func(p *Properties) *string { return &p.AppID },
		func(p *Properties) *string { return &p.ClusterID },
	}
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < roundTripIterations; i++ {
		var p Properties
		f.Fuzz(&p)
		*fields[r.Intn(len(fields))](&p) = strings.Repeat("é", 128+r.Intn(400)) // ≥ 256 bytes

		dst := make([]byte, 5, 64+r.Intn(4096))
		copy(dst, "hello")
		out, err := p.Append(dst)
		require.ErrorIs(t, err, wire.ErrShortStringTooLong)
		require.Equal(t, []byte("hello"), out, "dst unchanged on error")
		require.Equal(t, []byte("hello"), dst)
	}
}

// mutate returns a damaged copy of b: a flipped, set, inserted or deleted
// byte, a truncation, or a length prefix made larger.
func mutate(r *rand.Rand, b []byte) []byte {
	out := bytes.Clone(b)
	for n := 1 + r.Intn(3); n > 0; n-- {
		switch r.Intn(6) {
		case 0:
			if len(out) > 0 {
				out[r.Intn(len(out))] ^= byte(1 + r.Intn(255))
			}
		case 1:
			if len(out) > 0 {
				out[r.Intn(len(out))] = []byte{0x00, 0xff, 'F', 'A', 'S', 'V', 0x7f, 0x80}[r.Intn(8)]
			}
		case 2:
			i := r.Intn(len(out) + 1)
			out = append(out[:i], append([]byte{byte(r.Intn(256))}, out[i:]...)...)
		case 3:
			if len(out) > 0 {
				i := r.Intn(len(out))
				out = append(out[:i], out[i+1:]...)
			}
		case 4:
			out = out[:r.Intn(len(out)+1)]
		case 5:
			if len(out) >= 4 {
				i := r.Intn(len(out) - 3)
				out[i], out[i+1], out[i+2], out[i+3] = 0x7f, 0xff, 0xff, 0xff
			}
		}
	}
	return out
}

// checkTableBytes decodes arbitrary bytes: an error must name a sentinel; a
// success must re-encode to something that decodes the same.
func checkTableBytes(t *testing.T, b []byte) {
	t.Helper()
	tab, n, err := ReadTable(b)
	if err != nil {
		require.True(t, errors.Is(err, ErrMalformedTable) || errors.Is(err, ErrTooDeep), "%v", err)
		require.Nil(t, tab)
		require.Zero(t, n)
	} else {
		require.LessOrEqual(t, n, len(b))
		again, err := AppendTable(nil, tab)
		require.NoError(t, err)
		back, m, err := ReadTable(again)
		require.NoError(t, err)
		require.Equal(t, len(again), m)
		require.Equal(t, tab, back)
	}
	tab, err = DecodeTableFields(b)
	if err != nil {
		require.True(t, errors.Is(err, ErrMalformedTable) || errors.Is(err, ErrTooDeep), "%v", err)
		require.Nil(t, tab)
		return
	}
	again, err := AppendTableFields(nil, tab)
	require.NoError(t, err)
	back, err := DecodeTableFields(again)
	require.NoError(t, err)
	require.Equal(t, tab, back)
}

func checkPropertyBytes(t *testing.T, b []byte) {
	t.Helper()
	var v PropertiesView
	verr := v.Parse(b)
	p, err := ParseProperties(b)
	if err != nil {
		require.ErrorIs(t, err, ErrMalformedProperties)
		require.Equal(t, Properties{}, p)
		if verr != nil {
			require.ErrorIs(t, verr, ErrMalformedProperties)
		}
		return
	}
	require.NoError(t, verr)
	again, err := p.Append(nil)
	require.NoError(t, err)
	back, err := ParseProperties(again)
	require.NoError(t, err)
	require.Equal(t, p, back)
	require.Equal(t, p.Flags, p.PresentFlags())
}

func TestMalformedInputNeverPanics(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	f, _ := newFuzzer(t, seed)

	var tables, props [][]byte
	for _, tc := range tableVectors {
		tables = append(tables, hx(t, tc.hex))
	}
	tables = append(tables, nestedTableBytes(MaxNestingDepth-1), nestedMixedBytes(MaxNestingDepth-1))
	for _, tc := range propertyVectors {
		props = append(props, hx(t, tc.hex))
	}
	for range 200 {
		var tab Table
		f.Fuzz(&tab)
		b, err := AppendTable(nil, tab)
		require.NoError(t, err)
		tables = append(tables, b)
		var p Properties
		f.Fuzz(&p)
		b, err = p.Append(nil)
		require.NoError(t, err)
		props = append(props, b)
	}

	for i := 0; i < 5000; i++ {
		tb := mutate(r, tables[r.Intn(len(tables))])
		checkTableBytes(t, tb)
		checkTableBytes(t, tb[min(4, len(tb)):])
		checkPropertyBytes(t, mutate(r, props[r.Intn(len(props))]))
		garbage := make([]byte, r.Intn(32))
		r.Read(garbage)
		checkTableBytes(t, garbage)
		checkPropertyBytes(t, garbage)
	}
}

// FuzzReadTable and FuzzParseProperties run their seeds under go test and
// explore further under go test -fuzz.
func FuzzReadTable(f *testing.F) {
	for _, tc := range tableVectors {
		f.Add(hx(f, tc.hex))
	}
	f.Add(nestedTableBytes(MaxNestingDepth))
	f.Add(nestedArrayBytes(MaxNestingDepth - 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) { checkTableBytes(t, b) })
}

func FuzzParseProperties(f *testing.F) {
	for _, tc := range propertyVectors {
		f.Add(hx(f, tc.hex))
	}
	f.Add(hx(f, "8001 0000 04 74657874"))
	f.Add(hx(f, "0002"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) { checkPropertyBytes(t, b) })
}
