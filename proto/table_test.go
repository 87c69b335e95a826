package proto

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto/internal/wire"
)

// hx decodes a hex literal written with optional spaces for readability.
// Every expected byte sequence in these tests is written by hand from the
// AMQP 0-9-1 spec and RabbitMQ's errata, never produced by the encoder.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err, "bad hex literal %q", s)
	return b
}

func one(name string, v Value) Table { return Table{{Name: name, Value: v}} }

// tableVectors are one-field tables named "k" (short string 01 6b), one or
// more per type letter. Layout: 4-byte body length, then the field: name
// length, name, type letter, value.
var tableVectors = []struct {
	name  string
	hex   string
	table Table
}{
	// 't' boolean: one octet, 0 or 1.
	{"t true", "00000004 016b 74 01", one("k", Bool(true))},
	{"t false", "00000004 016b 74 00", one("k", Bool(false))},
	// 'b' signed 8-bit.
	{"b -5", "00000004 016b 62 fb", one("k", Int8(-5))},
	{"b min", "00000004 016b 62 80", one("k", Int8(math.MinInt8))},
	{"b max", "00000004 016b 62 7f", one("k", Int8(math.MaxInt8))},
	// 'B' unsigned 8-bit.
	{"B 250", "00000004 016b 42 fa", one("k", Uint8(250))},
	{"B 0", "00000004 016b 42 00", one("k", Uint8(0))},
	// 's' signed 16-bit (errata: not a short string).
	{"s -2", "00000005 016b 73 fffe", one("k", Int16(-2))},
	{"s min", "00000005 016b 73 8000", one("k", Int16(math.MinInt16))},
	{"s 258", "00000005 016b 73 0102", one("k", Int16(258))},
	// 'u' unsigned 16-bit.
	{"u max", "00000005 016b 75 ffff", one("k", Uint16(math.MaxUint16))},
	// 'I' signed 32-bit.
	{"I -1234567", "00000007 016b 49 ffed2979", one("k", Int32(-1234567))},
	{"I max", "00000007 016b 49 7fffffff", one("k", Int32(math.MaxInt32))},
	{"I min", "00000007 016b 49 80000000", one("k", Int32(math.MinInt32))},
	// 'i' unsigned 32-bit.
	{"i 4000000000", "00000007 016b 69 ee6b2800", one("k", Uint32(4000000000))},
	// 'l' signed 64-bit.
	{"l -2", "0000000b 016b 6c fffffffffffffffe", one("k", Int64(-2))},
	{"l min", "0000000b 016b 6c 8000000000000000", one("k", Int64(math.MinInt64))},
	{"l 2^40", "0000000b 016b 6c 0000010000000000", one("k", Int64(1<<40))},
	// 'L' 64-bit as py-amqp writes it; RabbitMQ reads it signed.
	{"L 2^40", "0000000b 016b 4c 0000010000000000", one("k", Int64L(1<<40))},
	{"L -1", "0000000b 016b 4c ffffffffffffffff", one("k", Int64L(-1))},
	// 'f' IEEE-754 single: 1.5 = 0x3fc00000, -2 = 0xc0000000.
	{"f 1.5", "00000007 016b 66 3fc00000", one("k", Float32(1.5))},
	{"f -2", "00000007 016b 66 c0000000", one("k", Float32(-2))},
	// 'd' IEEE-754 double: pi = 0x400921fb54442d18, -1 = 0xbff0000000000000.
	{"d pi", "0000000b 016b 64 400921fb54442d18", one("k", Float64(math.Pi))},
	{"d -1", "0000000b 016b 64 bff0000000000000", one("k", Float64(-1))},
	{"d NaN payload", "0000000b 016b 64 7ff8000000000001", one("k", Float64(math.Float64frombits(0x7ff8000000000001)))},
	// 'D' decimal: scale octet, then signed 32-bit value. 3.14 = 314 × 10^-2.
	{"D 3.14", "00000008 016b 44 02 0000013a", one("k", DecimalValue(Decimal{Scale: 2, Value: 314}))},
	{"D -0.05", "00000008 016b 44 02 fffffffb", one("k", DecimalValue(Decimal{Scale: 2, Value: -5}))},
	// 'S' long string: 4-byte length then bytes.
	{"S hi", "00000009 016b 53 00000002 6869", one("k", String("hi"))},
	{"S empty", "00000007 016b 53 00000000", one("k", String(""))},
	{"S non-ASCII", "0000000c 016b 53 00000005 c3a9 e282ac", one("k", String("é€"))},
	// 'x' byte array: same shape as 'S'.
	{"x 00ff", "00000009 016b 78 00000002 00ff", one("k", Bytes([]byte{0x00, 0xff}))},
	{"x empty", "00000007 016b 78 00000000", one("k", Bytes(nil))},
	// 'A' field array: 4-byte length, then type-tagged values without names.
	{
		"A mixed with void",
		"00000015 016b 41 0000000e" +
			" 49 00000001" + // I 1
			" 53 00000001 61" + // S "a"
			" 56" + // V
			" 74 00", // t false
		one("k", ArrayValue(Int32(1), String("a"), Void(), Bool(false))),
	},
	{"A empty", "00000007 016b 41 00000000", one("k", ArrayValue())},
	// 'T' timestamp: 64-bit seconds. 1714979289 = 0x663881d9.
	{"T 1714979289", "0000000b 016b 54 00000000663881d9", one("k", Timestamp(time.Unix(1714979289, 0)))},
	// 'F' nested table.
	{"F one field", "0000000b 016b 46 00000004 0161 42 01", one("k", TableValue(one("a", Uint8(1))))},
	{"F empty", "00000007 016b 46 00000000", one("k", TableValue(nil))},
	{
		"F holding an array",
		"00000010 016b 46 00000009 0178 41 00000002 62 ff",
		one("k", TableValue(one("x", ArrayValue(Int8(-1))))),
	},
	// 'V' void: the letter alone.
	{"V", "00000003 016b 56", one("k", Void())},
	// An empty field name is a valid short string.
	{"empty name", "00000002 00 56", one("", Void())},
}

func TestTableVectors(t *testing.T) {
	seen := map[Kind]bool{}
	for _, tc := range tableVectors {
		t.Run(tc.name, func(t *testing.T) {
			want := hx(t, tc.hex)
			require.Equal(t, int(binary.BigEndian.Uint32(want)), len(want)-4, "vector's own length prefix")

			got, err := AppendTable(nil, tc.table)
			require.NoError(t, err)
			require.Equal(t, want, got, "AppendTable")

			// Appending after existing bytes leaves them alone.
			got, err = AppendTable([]byte{0xaa, 0xbb}, tc.table)
			require.NoError(t, err)
			require.Equal(t, append([]byte{0xaa, 0xbb}, want...), got)

			dec, n, err := ReadTable(want)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Equal(t, tc.table, dec, "ReadTable")

			// Trailing bytes are left for the caller.
			dec, n, err = ReadTable(append(append([]byte{}, want...), 0xce, 0x01))
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Equal(t, tc.table, dec)

			dec, err = DecodeTableFields(want[4:])
			require.NoError(t, err)
			require.Equal(t, tc.table, dec, "DecodeTableFields")

			fields, err := AppendTableFields(nil, tc.table)
			require.NoError(t, err)
			require.Equal(t, want[4:], fields, "AppendTableFields")
		})
		seen[tc.table[0].Value.Kind()] = true
	}
	for _, k := range "tbBsuIilLfdDSxATFV" {
		require.True(t, seen[Kind(k)], "no vector for %c", k)
	}
}

func TestTableVectorMultipleFieldsKeepOrder(t *testing.T) {
	// {"x-max-length": I 10, "x-overflow": S "reject-publish"}, in that order.
	want := hx(t, "00000030"+
		" 0c 782d6d61782d6c656e677468 49 0000000a"+
		" 0a 782d6f766572666c6f77 53 0000000e 72656a6563742d7075626c697368")
	tab := Table{
		{"x-max-length", Int32(10)},
		{"x-overflow", String("reject-publish")},
	}
	got, err := AppendTable(nil, tab)
	require.NoError(t, err)
	require.Equal(t, want, got)
	dec, n, err := ReadTable(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.Equal(t, tab, dec)

	// Reversed order gives different bytes: order is not canonicalised.
	rev := Table{tab[1], tab[0]}
	got, err = AppendTable(nil, rev)
	require.NoError(t, err)
	require.NotEqual(t, want, got)
	dec, _, err = ReadTable(got)
	require.NoError(t, err)
	require.Equal(t, rev, dec)

	// Duplicate names survive a round trip.
	dup := Table{{"a", Int8(1)}, {"a", Int8(2)}}
	got, err = AppendTable(nil, dup)
	require.NoError(t, err)
	require.Equal(t, hx(t, "00000008 0161 62 01 0161 62 02"), got)
	dec, _, err = ReadTable(got)
	require.NoError(t, err)
	require.Equal(t, dup, dec)
}

func TestEmptyTable(t *testing.T) {
	empty := hx(t, "00000000")
	for _, tab := range []Table{nil, {}} {
		got, err := AppendTable(nil, tab)
		require.NoError(t, err)
		require.Equal(t, empty, got)
		got, err = AppendTableFields(nil, tab)
		require.NoError(t, err)
		require.Empty(t, got)
	}
	dec, n, err := ReadTable(empty)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Nil(t, dec, "an empty table decodes as a nil Table")

	dec, err = DecodeTableFields(nil)
	require.NoError(t, err)
	require.Nil(t, dec)
	dec, err = DecodeTableFields([]byte{})
	require.NoError(t, err)
	require.Nil(t, dec)
}

func TestKindLKeepsItsLetter(t *testing.T) {
	in := hx(t, "0000000b 016b 4c fffffffffffffff6") // L -10
	tab, _, err := ReadTable(in)
	require.NoError(t, err)
	v, ok := tab.Get("k")
	require.True(t, ok)
	require.Equal(t, KindInt64L, v.Kind())
	n, ok := v.AsInt()
	require.True(t, ok)
	require.Equal(t, int64(-10), n)
	require.Equal(t, int64(-10), v.Interface())

	out, err := AppendTable(nil, tab)
	require.NoError(t, err)
	require.Equal(t, in, out, "'L' must not be rewritten as 'l'")

	// And 'l' stays 'l'.
	in[6] = 'l'
	tab, _, err = ReadTable(in)
	require.NoError(t, err)
	require.Equal(t, KindInt64, tab[0].Value.Kind())
	out, err = AppendTable(nil, tab)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

func TestBoolDecodingCanonicalises(t *testing.T) {
	// Any non-zero octet reads as true; the decoded value is the canonical
	// Bool(true) and re-encodes as 01 (so this is the one input whose bytes
	// do not survive a round trip).
	tab, _, err := ReadTable(hx(t, "00000004 016b 74 02"))
	require.NoError(t, err)
	require.Equal(t, one("k", Bool(true)), tab)
	out, err := AppendTable(nil, tab)
	require.NoError(t, err)
	require.Equal(t, hx(t, "00000004 016b 74 01"), out)
}

func TestAsIntAllIntegerKinds(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		want int64
	}{
		{Int8(-128), -128},
		{Int8(127), 127},
		{Uint8(255), 255},
		{Int16(-32768), -32768},
		{Uint16(65535), 65535},
		{Int32(math.MinInt32), math.MinInt32},
		{Uint32(math.MaxUint32), math.MaxUint32},
		{Int64(math.MinInt64), math.MinInt64},
		{Int64(math.MaxInt64), math.MaxInt64},
		{Int64L(math.MinInt64), math.MinInt64},
		{Int64L(42), 42},
	} {
		t.Run(tc.v.Kind().String(), func(t *testing.T) {
			got, ok := tc.v.AsInt()
			require.True(t, ok)
			require.Equal(t, tc.want, got)

			// Also after a decode, which sign-extends or zero-extends.
			b, err := AppendTable(nil, one("k", tc.v))
			require.NoError(t, err)
			dec, _, err := ReadTable(b)
			require.NoError(t, err)
			got, ok = dec[0].Value.AsInt()
			require.True(t, ok)
			require.Equal(t, tc.want, got)
		})
	}
	for _, v := range []Value{Bool(true), Float32(1), Float64(1), DecimalValue(Decimal{0, 1}), String("1"),
		Bytes([]byte{1}), Timestamp(time.Unix(1, 0)), TableValue(nil), ArrayValue(), Void(), {}} {
		n, ok := v.AsInt()
		require.False(t, ok, "%v", v.Kind())
		require.Zero(t, n)
	}
}

func TestValueAccessors(t *testing.T) {
	b, ok := Bool(true).AsBool()
	require.True(t, ok)
	require.True(t, b)
	b, ok = Bool(false).AsBool()
	require.True(t, ok)
	require.False(t, b)
	_, ok = Int8(1).AsBool()
	require.False(t, ok)

	f, ok := Float32(1.5).AsFloat()
	require.True(t, ok)
	require.Equal(t, 1.5, f)
	f, ok = Float64(-0.25).AsFloat()
	require.True(t, ok)
	require.Equal(t, -0.25, f)
	f, ok = DecimalValue(Decimal{Scale: 2, Value: 314}).AsFloat()
	require.True(t, ok)
	require.InDelta(t, 3.14, f, 1e-12)
	_, ok = Int32(1).AsFloat()
	require.False(t, ok)

	d, ok := DecimalValue(Decimal{Scale: 255, Value: math.MinInt32}).AsDecimal()
	require.True(t, ok)
	require.Equal(t, Decimal{Scale: 255, Value: math.MinInt32}, d)
	_, ok = Float64(1).AsDecimal()
	require.False(t, ok)

	s, ok := String("é").AsString()
	require.True(t, ok)
	require.Equal(t, "é", s)
	s, ok = Bytes([]byte("raw")).AsString()
	require.True(t, ok)
	require.Equal(t, "raw", s)
	_, ok = Int8(1).AsString()
	require.False(t, ok)

	src := []byte("abc")
	bv := Bytes(src)
	src[0] = 'X' // Bytes copies
	bs, ok := bv.AsBytes()
	require.True(t, ok)
	require.Equal(t, []byte("abc"), bs)
	bs[1] = 'Y' // AsBytes copies
	bs, _ = bv.AsBytes()
	require.Equal(t, []byte("abc"), bs)
	bs, ok = String("s").AsBytes()
	require.True(t, ok)
	require.Equal(t, []byte("s"), bs)
	_, ok = Void().AsBytes()
	require.False(t, ok)

	tm, ok := Timestamp(time.Date(2024, 5, 6, 9, 8, 9, 999, time.FixedZone("X", 2*3600))).AsTime()
	require.True(t, ok)
	require.Equal(t, time.Unix(1714979289, 0).UTC(), tm, "truncated to the second, in UTC")
	tm, ok = Timestamp(time.Unix(-5, 0)).AsTime()
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 0).UTC(), tm, "times before 1970 become the epoch")
	_, ok = Int64(1).AsTime()
	require.False(t, ok)

	inner := one("a", Int8(1))
	tab, ok := TableValue(inner).AsTable()
	require.True(t, ok)
	require.Equal(t, inner, tab)
	_, ok = ArrayValue(Int8(1)).AsTable()
	require.False(t, ok)

	arr, ok := ArrayValue(Int8(1), Void()).AsArray()
	require.True(t, ok)
	require.Equal(t, []Value{Int8(1), Void()}, arr)
	_, ok = TableValue(inner).AsArray()
	require.False(t, ok)

	require.True(t, Void().IsVoid())
	require.True(t, Value{}.IsVoid(), "the zero Value is void")
	require.Equal(t, KindVoid, Value{}.Kind())
	require.False(t, Int8(0).IsVoid())
}

func TestValueInterface(t *testing.T) {
	ts := time.Unix(1714979289, 0).UTC()
	for _, tc := range []struct {
		v    Value
		want any
	}{
		{Bool(true), true},
		{Int8(-1), int8(-1)},
		{Uint8(200), uint8(200)},
		{Int16(-300), int16(-300)},
		{Uint16(60000), uint16(60000)},
		{Int32(-70000), int32(-70000)},
		{Uint32(3000000000), uint32(3000000000)},
		{Int64(-1), int64(-1)},
		{Int64L(-1), int64(-1)},
		{Float32(1.5), float32(1.5)},
		{Float64(2.5), 2.5},
		{DecimalValue(Decimal{2, 314}), Decimal{2, 314}},
		{String("s"), "s"},
		{Bytes([]byte{1, 2}), []byte{1, 2}},
		{Timestamp(ts), ts},
		{ArrayValue(Int8(1), Void(), String("x")), []any{int8(1), nil, "x"}},
		{TableValue(Table{{"a", Int8(1)}, {"b", TableValue(one("c", Void()))}}),
			map[string]any{"a": int8(1), "b": map[string]any{"c": nil}}},
		{TableValue(nil), map[string]any{}},
		{Void(), nil},
		{Value{}, nil},
	} {
		require.Equal(t, tc.want, tc.v.Interface(), "%v", tc.v)
	}
}

func TestValueOf(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   any
		want Value
	}{
		{"nil", nil, Void()},
		{"Value", Int64L(3), Int64L(3)},
		{"bool", true, Bool(true)},
		{"int8", int8(-3), Int8(-3)},
		{"uint8", uint8(3), Uint8(3)},
		{"int16", int16(-3), Int16(-3)},
		{"uint16", uint16(3), Uint16(3)},
		{"int32", int32(-3), Int32(-3)},
		{"uint32", uint32(3), Uint32(3)},
		{"int64", int64(-3), Int64(-3)},
		{"int", -3, Int64(-3)},
		{"uint", uint(3), Int64(3)},
		{"uint max int64", uint(math.MaxInt64), Int64(math.MaxInt64)},
		{"uint64", uint64(math.MaxInt64), Int64(math.MaxInt64)},
		{"float32", float32(1.5), Float32(1.5)},
		{"float64", 1.5, Float64(1.5)},
		{"Decimal", Decimal{2, 314}, DecimalValue(Decimal{2, 314})},
		{"string", "s", String("s")},
		{"[]byte", []byte{1}, Bytes([]byte{1})},
		{"time", ts, Timestamp(ts)},
		{"Table", one("a", Int8(1)), TableValue(one("a", Int8(1)))},
		{"map", map[string]any{"b": 1, "a": "x"}, TableValue(Table{{"a", String("x")}, {"b", Int64(1)}})},
		{"[]Value", []Value{Int8(1), Void()}, ArrayValue(Int8(1), Void())},
		{"[]any", []any{int8(1), nil, map[string]any{"z": true}}, ArrayValue(Int8(1), Void(), TableValue(one("z", Bool(true))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValueOf(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	for _, tc := range []struct {
		name string
		in   any
		msg  string
	}{
		{"uint64 overflow", uint64(math.MaxInt64) + 1, "does not fit"},
		{"uint64 max", uint64(math.MaxUint64), "does not fit"},
		{"uint overflow", uint(math.MaxUint64), "does not fit"},
		{"struct", struct{}{}, "struct {}"},
		{"map of int", map[string]int{"a": 1}, "map[string]int"},
		{"[]string", []string{"a"}, "[]string"},
		{"pointer", new(int), "*int"},
		{"complex", complex(1, 2), "complex128"},
		{"Kind", KindBool, "proto.Kind"},
		{"nested in []any", []any{1, uint64(math.MaxUint64)}, "array element 1"},
		{"nested in map", map[string]any{"bad": struct{}{}}, `field "bad"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValueOf(tc.in)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
			require.Equal(t, Value{}, got)
		})
	}
}

func TestTableAccessors(t *testing.T) {
	var tab Table
	_, ok := tab.Get("a")
	require.False(t, ok)
	require.False(t, tab.Delete("a"))

	tab.Set("a", Int8(1))
	tab.Set("b", Int8(2))
	tab.Set("a", Int8(3)) // replaces in place
	require.Equal(t, Table{{"a", Int8(3)}, {"b", Int8(2)}}, tab)

	v, ok := tab.Get("b")
	require.True(t, ok)
	require.Equal(t, Int8(2), v)

	require.NoError(t, tab.SetAny("c", "text"))
	require.NoError(t, tab.SetAny("a", nil))
	require.Equal(t, Table{{"a", Void()}, {"b", Int8(2)}, {"c", String("text")}}, tab)

	err := tab.SetAny("d", uint64(math.MaxUint64))
	require.Error(t, err)
	require.Contains(t, err.Error(), `field "d"`)
	err = tab.SetAny("b", struct{}{})
	require.Error(t, err)
	require.Equal(t, Table{{"a", Void()}, {"b", Int8(2)}, {"c", String("text")}}, tab, "a failed SetAny changes nothing")

	// Get and Set act on the first of duplicate names; Delete removes all.
	dup := Table{{"x", Int8(1)}, {"y", Int8(2)}, {"x", Int8(3)}}
	v, _ = dup.Get("x")
	require.Equal(t, Int8(1), v)
	dup.Set("x", Int8(9))
	require.Equal(t, Table{{"x", Int8(9)}, {"y", Int8(2)}, {"x", Int8(3)}}, dup)
	require.True(t, dup.Delete("x"))
	require.Equal(t, Table{{"y", Int8(2)}}, dup)
	require.False(t, dup.Delete("x"))
	require.True(t, dup.Delete("y"))
	require.Empty(t, dup)

	m := Table{{"a", Int8(1)}, {"n", TableValue(one("x", ArrayValue(Uint8(2))))}, {"a", Int8(2)}}.Map()
	require.Equal(t, map[string]any{"a": int8(2), "n": map[string]any{"x": []any{uint8(2)}}}, m,
		"Map keeps the last of duplicate names")
	require.Equal(t, map[string]any{}, Table(nil).Map())
}

func TestTableFromMap(t *testing.T) {
	tab, err := TableFromMap(map[string]any{"zeta": 1, "alpha": "a", "Mid": true, "beta": nil, "": int8(0)})
	require.NoError(t, err)
	require.Equal(t, Table{
		{"", Int8(0)},
		{"Mid", Bool(true)},
		{"alpha", String("a")},
		{"beta", Void()},
		{"zeta", Int64(1)},
	}, tab)

	// Deterministic bytes regardless of map iteration order.
	first, err := AppendTable(nil, tab)
	require.NoError(t, err)
	for range 20 {
		again, err := TableFromMap(map[string]any{"zeta": 1, "alpha": "a", "Mid": true, "beta": nil, "": int8(0)})
		require.NoError(t, err)
		b, err := AppendTable(nil, again)
		require.NoError(t, err)
		require.Equal(t, first, b)
	}

	tab, err = TableFromMap(nil)
	require.NoError(t, err)
	require.Empty(t, tab)

	_, err = TableFromMap(map[string]any{"ok": 1, "bad": make(chan int)})
	require.Error(t, err)
	require.Contains(t, err.Error(), `field "bad"`)
}

func TestDecimalString(t *testing.T) {
	for _, tc := range []struct {
		d    Decimal
		want string
	}{
		{Decimal{2, 314}, "3.14"},
		{Decimal{2, -5}, "-0.05"},
		{Decimal{0, 7}, "7"},
		{Decimal{0, 0}, "0"},
		{Decimal{0, -7}, "-7"},
		{Decimal{3, 5}, "0.005"},
		{Decimal{1, -10}, "-1.0"},
		{Decimal{2, 100}, "1.00"},
		{Decimal{0, math.MinInt32}, "-2147483648"},
		{Decimal{2, math.MinInt32}, "-21474836.48"},
		{Decimal{12, math.MaxInt32}, "0.002147483647"},
	} {
		require.Equal(t, tc.want, tc.d.String(), "%#v", tc.d)
	}
	require.InDelta(t, 3.14, Decimal{2, 314}.Float64(), 1e-12)
	require.InDelta(t, -0.05, Decimal{2, -5}.Float64(), 1e-12)
}

func TestValueString(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		want string
	}{
		{Int32(42), "I:42"},
		{Int8(-1), "b:-1"},
		{Uint8(7), "B:7"},
		{Int16(-2), "s:-2"},
		{Uint16(2), "u:2"},
		{Uint32(3), "i:3"},
		{Int64(-4), "l:-4"},
		{Int64L(-3), "L:-3"},
		{Bool(true), "t:true"},
		{Float32(1.5), "f:1.5"},
		{Float64(-2.25), "d:-2.25"},
		{DecimalValue(Decimal{2, 314}), "D:3.14"},
		{String("text"), `S:"text"`},
		{String("a\"b\n"), `S:"a\"b\n"`},
		{Bytes([]byte("hi")), "x:6869"},
		{Timestamp(time.Unix(1714979289, 0)), "T:2024-05-06T07:08:09Z"},
		{Void(), "V"},
		{Value{}, "V"},
		{ArrayValue(Int8(1), Void()), "A:[1 <nil>]"},
		{TableValue(one("a", Uint8(1))), "F:map[a:1]"},
	} {
		require.Equal(t, tc.want, tc.v.String())
	}
}

func TestKindString(t *testing.T) {
	require.Equal(t, "I (int32)", KindInt32.String())
	require.Equal(t, "L (int64 (L))", KindInt64L.String())
	require.Equal(t, "V (void)", KindVoid.String())
	require.Equal(t, "unknown kind 0x5a", Kind('Z').String())
	require.Equal(t, "unknown kind 0x00", Kind(0).String())
	for _, k := range "tbBsuIilLfdDSxATFV" {
		s := Kind(k).String()
		require.True(t, strings.HasPrefix(s, string(k)+" ("), s)
	}
}

func TestReadTableOwnsItsMemory(t *testing.T) {
	in := hx(t, "00000010 0161 53 00000001 78 0162 78 00000001 79")
	tab, _, err := ReadTable(in)
	require.NoError(t, err)
	for i := range in {
		in[i] = 0xee
	}
	require.Equal(t, Table{{"a", String("x")}, {"b", Bytes([]byte("y"))}}, tab)
}

// decodeErr runs both decoders on a field-table body and returns the
// DecodeTableFields error, checking ReadTable agrees.
func decodeErr(t *testing.T, body []byte) error {
	t.Helper()
	framed := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	framed = append(framed, body...)
	tab, n, err1 := ReadTable(framed)
	tab2, err2 := DecodeTableFields(body)
	if err2 == nil {
		require.NoError(t, err1)
		require.Equal(t, tab2, tab)
		require.Equal(t, len(framed), n)
		return nil
	}
	require.Error(t, err1)
	require.Nil(t, tab)
	require.Zero(t, n)
	require.Nil(t, tab2)
	require.Equal(t, errors.Is(err2, ErrTooDeep), errors.Is(err1, ErrTooDeep))
	return err2
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"unknown type letter Z", "016b 5a 00"},
		{"unknown type letter NUL", "016b 00"},
		{"spec 's' short-string reading is not accepted as 'S'", "016b 73 01"},
		{"missing type letter", "016b"},
		{"name longer than input", "05 6162"},
		{"t without octet", "016b 74"},
		{"b without octet", "016b 62"},
		{"B without octet", "016b 42"},
		{"s one octet", "016b 73 ff"},
		{"u one octet", "016b 75 ff"},
		{"I three octets", "016b 49 000000"},
		{"i three octets", "016b 69 000000"},
		{"l seven octets", "016b 6c 00000000000000"},
		{"L seven octets", "016b 4c 00000000000000"},
		{"f three octets", "016b 66 3fc000"},
		{"d seven octets", "016b 64 400921fb54442d"},
		{"D scale only", "016b 44 02"},
		{"D three value octets", "016b 44 02 000001"},
		{"T seven octets", "016b 54 00000000663881"},
		{"S length truncated", "016b 53 0000"},
		{"S longer than input", "016b 53 00000005 6869"},
		{"S length 2^32-1", "016b 53 ffffffff 00"},
		{"x longer than input", "016b 78 00000003 00"},
		{"A length truncated", "016b 41 00"},
		{"A longer than input", "016b 41 00000006 56"},
		{"A element truncated inside body", "016b 41 00000002 49 00"},
		{"A element unknown letter", "016b 41 00000001 5a"},
		{"F length truncated", "016b 46 000000"},
		{"F longer than input", "016b 46 00000009 0161 56"},
		{"F field truncated inside body", "016b 46 00000002 0561"},
		{"F field unknown type inside body", "016b 46 00000003 0161 3f"},
		{"second field truncated", "016b 56 0161 49 0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeErr(t, hx(t, tc.body))
			require.Error(t, err)
			require.ErrorIs(t, err, ErrMalformedTable)
		})
	}

	// Truncating ReadTable's length prefix itself.
	for _, in := range []string{"", "00", "000000", "00000001", "00000005 016b 56"} {
		_, _, err := ReadTable(hx(t, in))
		require.ErrorIs(t, err, ErrMalformedTable, "%q", in)
	}

	// Every strict prefix of every vector fails: ReadTable always (its
	// length prefix promises more), DecodeTableFields for every non-empty
	// prefix of a one-field body.
	for _, tc := range tableVectors {
		full := hx(t, tc.hex)
		for k := 0; k < len(full); k++ {
			_, _, err := ReadTable(full[:k])
			require.ErrorIs(t, err, ErrMalformedTable, "%s: ReadTable prefix %d", tc.name, k)
		}
		body := full[4:]
		for k := 1; k < len(body); k++ {
			_, err := DecodeTableFields(body[:k])
			require.ErrorIs(t, err, ErrMalformedTable, "%s: body prefix %d", tc.name, k)
		}
	}
}

// nestedTableBytes builds, without the encoder, a table whose field "a" holds
// a table whose field "a" holds … n nested 'F' values, the innermost empty.
// Level i (counting from the innermost, 1-based) is 01 61 46 <len 7(i-1)>.
func nestedTableBytes(n int) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(7*n))
	for i := n; i >= 1; i-- {
		out = append(out, 0x01, 'a', 'F')
		out = binary.BigEndian.AppendUint32(out, uint32(7*(i-1)))
	}
	return out
}

// nestedArrayBytes builds a table whose field "a" holds n nested 'A'
// values, the innermost empty. Level i is 41 <len 5(i-1)>.
func nestedArrayBytes(n int) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(2+5*n))
	out = append(out, 0x01, 'a')
	for i := n; i >= 1; i-- {
		out = append(out, 'A')
		out = binary.BigEndian.AppendUint32(out, uint32(5*(i-1)))
	}
	return out
}

// nestedMixedBytes alternates 'F' and 'A' for n levels, the outermost an
// 'F': F{"a": A[F{"a": A[…]}]}. Built from the innermost (empty) value out;
// a table level wraps the inner value in a field named "a", an array level
// holds it as its only element.
func nestedMixedBytes(n int) []byte {
	var inner []byte
	for i := 1; i <= n; i++ {
		isTable := (n-i)%2 == 0
		var body []byte
		if i > 1 {
			if isTable {
				body = append(body, 0x01, 'a')
			}
			body = append(body, inner...)
		}
		letter := byte('A')
		if isTable {
			letter = 'F'
		}
		v := append([]byte{letter}, binary.BigEndian.AppendUint32(nil, uint32(len(body)))...)
		inner = append(v, body...)
	}
	body := append([]byte{0x01, 'a'}, inner...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func nestedTable(n int) Table {
	var t Table
	for range n {
		t = one("a", TableValue(t))
	}
	return t
}

func nestedArray(n int) Table {
	v := ArrayValue()
	for range n - 1 {
		v = ArrayValue(v)
	}
	return one("a", v)
}

func nestedMixed(n int) Table {
	var v Value
	for i := 1; i <= n; i++ {
		isTable := (n-i)%2 == 0
		switch {
		case i == 1 && isTable:
			v = TableValue(nil)
		case i == 1:
			v = ArrayValue()
		case isTable:
			v = TableValue(one("a", v))
		default:
			v = ArrayValue(v)
		}
	}
	return one("a", v)
}

func TestNestingDepth(t *testing.T) {
	// With MaxNestingDepth = 32 the top-level table is depth 0, so 31
	// nested tables or arrays are accepted and 32 are too deep, the same
	// way for encoding and decoding.
	require.Equal(t, 32, MaxNestingDepth)
	for _, tc := range []struct {
		name  string
		bytes func(int) []byte
		table func(int) Table
	}{
		{"tables", nestedTableBytes, nestedTable},
		{"arrays", nestedArrayBytes, nestedArray},
		{"mixed", nestedMixedBytes, nestedMixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The hand-built bytes match the encoder for small n.
			for n := 1; n <= 4; n++ {
				b, err := AppendTable(nil, tc.table(n))
				require.NoError(t, err)
				require.Equal(t, tc.bytes(n), b, "n=%d", n)
			}

			ok := tc.bytes(MaxNestingDepth - 1)
			tab, n, err := ReadTable(ok)
			require.NoError(t, err)
			require.Equal(t, len(ok), n)
			require.Equal(t, tc.table(MaxNestingDepth-1), tab)
			_, err = DecodeTableFields(ok[4:])
			require.NoError(t, err)
			enc, err := AppendTable(nil, tc.table(MaxNestingDepth-1))
			require.NoError(t, err)
			require.Equal(t, ok, enc)

			for _, depth := range []int{MaxNestingDepth, MaxNestingDepth + 1, 1000} {
				deep := tc.bytes(depth)
				tab, n, err = ReadTable(deep)
				require.ErrorIs(t, err, ErrTooDeep, "depth %d", depth)
				require.Nil(t, tab)
				require.Zero(t, n)
				_, err = DecodeTableFields(deep[4:])
				require.ErrorIs(t, err, ErrTooDeep)

				prefix := []byte{1, 2, 3}
				out, err := AppendTable(prefix, tc.table(depth))
				require.ErrorIs(t, err, ErrTooDeep, "encode depth %d", depth)
				require.Equal(t, []byte{1, 2, 3}, out, "dst unchanged on error")
				out, err = AppendTableFields(prefix, tc.table(depth))
				require.ErrorIs(t, err, ErrTooDeep)
				require.Equal(t, []byte{1, 2, 3}, out, "AppendTableFields leaves dst unchanged on error")
			}
		})
	}

	// Far deeper input than the stack would tolerate if decoding recursed
	// without bound: a hundred thousand nested arrays (500 kB) and tables (700 kB).
	_, _, err := ReadTable(nestedArrayBytes(100_000))
	require.ErrorIs(t, err, ErrTooDeep)
	_, _, err = ReadTable(nestedTableBytes(100_000))
	require.ErrorIs(t, err, ErrTooDeep)
}

func TestCyclicValuesFailToEncode(t *testing.T) {
	// A table whose only field holds the table itself: TableValue keeps
	// the same slice, so the value refers to its own backing array.
	self := make(Table, 1)
	self[0] = Field{Name: "self", Value: TableValue(self)}
	out, err := AppendTable([]byte{9}, self)
	require.ErrorIs(t, err, ErrTooDeep)
	require.Equal(t, []byte{9}, out)

	// An array that contains itself.
	arr := make([]Value, 2)
	arr[0] = Int8(1)
	arr[1] = ArrayValue(arr...)
	_, err = AppendTable(nil, one("a", ArrayValue(arr...)))
	require.ErrorIs(t, err, ErrTooDeep)

	// A table reachable from itself through an array.
	loop := make(Table, 1)
	loop[0] = Field{Name: "l", Value: ArrayValue(TableValue(loop))}
	_, err = AppendTable(nil, loop)
	require.ErrorIs(t, err, ErrTooDeep)
	out, err = AppendTableFields([]byte{8}, loop)
	require.ErrorIs(t, err, ErrTooDeep)
	require.Equal(t, []byte{8}, out)

	// And through Properties.Append.
	p := Properties{Headers: loop}
	out, err = p.Append([]byte{7})
	require.ErrorIs(t, err, ErrTooDeep)
	require.Equal(t, []byte{7}, out)
}

func TestFieldNames(t *testing.T) {
	name255 := strings.Repeat("n", 255)
	tab := one(name255, Void())
	b, err := AppendTable(nil, tab)
	require.NoError(t, err)
	want := append(hx(t, "00000101 ff"), name255...) // 4+1+255+1 → body 257 = 0x101
	want = append(want, 'V')
	require.Equal(t, want, b)
	dec, _, err := ReadTable(b)
	require.NoError(t, err)
	require.Equal(t, tab, dec)

	for _, n := range []int{256, 1000} {
		for _, tab := range []Table{
			one(strings.Repeat("n", n), Void()),
			{{"ok", Int8(1)}, {strings.Repeat("é", n/2+1), Int8(2)}},
			one("outer", TableValue(one(strings.Repeat("n", n), Void()))),
			one("outer", ArrayValue(TableValue(one(strings.Repeat("n", n), Void())))),
		} {
			out, err := AppendTable([]byte{0xab}, tab)
			require.ErrorIs(t, err, wire.ErrShortStringTooLong)
			require.Equal(t, []byte{0xab}, out, "dst unchanged on error")
			out, err = AppendTableFields([]byte{0xcd}, tab)
			require.ErrorIs(t, err, wire.ErrShortStringTooLong)
			require.Equal(t, []byte{0xcd}, out, "dst unchanged on error")
		}
	}
}

func TestUnencodableKind(t *testing.T) {
	// Only reachable from inside the package: a Value with a bogus kind.
	out, err := AppendTable([]byte{1}, one("k", Value{kind: 'Z'}))
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot encode")
	require.Equal(t, []byte{1}, out)
	out, err = AppendTableFields([]byte{1}, Table{{"ok", Void()}, {"k", Value{kind: 'Z'}}})
	require.Error(t, err)
	require.Equal(t, []byte{1}, out)
}
