package proto

import (
	"fmt"
	"math"
	"time"
)

// Kind is the one-letter type tag of a field value, as RabbitMQ reads and
// writes it (the 0-9-1 errata, which differs from the spec's own table: for
// example 's' is a signed 16-bit integer, not a short string).
type Kind byte

// The field-value kinds RabbitMQ understands.
const (
	KindBool      Kind = 't' // boolean
	KindInt8      Kind = 'b' // signed 8-bit
	KindUint8     Kind = 'B' // unsigned 8-bit
	KindInt16     Kind = 's' // signed 16-bit
	KindUint16    Kind = 'u' // unsigned 16-bit
	KindInt32     Kind = 'I' // signed 32-bit
	KindUint32    Kind = 'i' // unsigned 32-bit
	KindInt64     Kind = 'l' // signed 64-bit
	KindInt64L    Kind = 'L' // 64-bit written with 'L' (py-amqp does); RabbitMQ reads it as signed like 'l'
	KindFloat32   Kind = 'f' // IEEE-754 single
	KindFloat64   Kind = 'd' // IEEE-754 double
	KindDecimal   Kind = 'D' // scale octet + 32-bit value
	KindString    Kind = 'S' // long string
	KindBytes     Kind = 'x' // byte array
	KindArray     Kind = 'A' // field array
	KindTimestamp Kind = 'T' // seconds since the Unix epoch
	KindTable     Kind = 'F' // nested field table
	KindVoid      Kind = 'V' // no value
)

// String returns the kind's letter and name, e.g. "I (int32)".
func (k Kind) String() string {
	var name string
	switch k {
	case KindBool:
		name = "bool"
	case KindInt8:
		name = "int8"
	case KindUint8:
		name = "uint8"
	case KindInt16:
		name = "int16"
	case KindUint16:
		name = "uint16"
	case KindInt32:
		name = "int32"
	case KindUint32:
		name = "uint32"
	case KindInt64:
		name = "int64"
	case KindInt64L:
		name = "int64 (L)"
	case KindFloat32:
		name = "float32"
	case KindFloat64:
		name = "float64"
	case KindDecimal:
		name = "decimal"
	case KindString:
		name = "string"
	case KindBytes:
		name = "bytes"
	case KindArray:
		name = "array"
	case KindTimestamp:
		name = "timestamp"
	case KindTable:
		name = "table"
	case KindVoid:
		name = "void"
	default:
		return fmt.Sprintf("unknown kind 0x%02x", byte(k))
	}
	return string(rune(k)) + " (" + name + ")"
}

// Decimal is an AMQP decimal: Value × 10^-Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// Float64 returns the decimal as a float64 (which may round).
func (d Decimal) Float64() float64 { return float64(d.Value) / math.Pow10(int(d.Scale)) }

// String formats the decimal exactly, e.g. "3.14".
func (d Decimal) String() string {
	v := int64(d.Value)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	s := fmt.Sprintf("%0*d", int(d.Scale)+1, v)
	if d.Scale == 0 {
		return sign + s
	}
	return sign + s[:len(s)-int(d.Scale)] + "." + s[len(s)-int(d.Scale):]
}

// Value is one field value in a Table or Array. It keeps its Kind, so a
// decoded value re-encodes to the same bytes. The zero Value is void.
//
// Build values with the constructors (String, Int32, TableValue, …) or
// ValueOf; read them with the As… accessors or Interface.
type Value struct {
	_    [0]func() // not comparable with ==: values may hold tables; use reflect.DeepEqual or require.Equal
	kind Kind      // 0 for void
	n    uint64    // integers, float bits, bool, timestamp seconds, decimal
	s    string    // string and byte-array contents
	ref  any       // Table or []Value
}

// Bool returns a 't' value.
func Bool(v bool) Value {
	var n uint64
	if v {
		n = 1
	}
	return Value{kind: KindBool, n: n}
}

// Int8 returns a 'b' value.
func Int8(v int8) Value { return Value{kind: KindInt8, n: uint64(int64(v))} }

// Uint8 returns a 'B' value.
func Uint8(v uint8) Value { return Value{kind: KindUint8, n: uint64(v)} }

// Int16 returns an 's' value.
func Int16(v int16) Value { return Value{kind: KindInt16, n: uint64(int64(v))} }

// Uint16 returns a 'u' value.
func Uint16(v uint16) Value { return Value{kind: KindUint16, n: uint64(v)} }

// Int32 returns an 'I' value.
func Int32(v int32) Value { return Value{kind: KindInt32, n: uint64(int64(v))} }

// Uint32 returns an 'i' value.
func Uint32(v uint32) Value { return Value{kind: KindUint32, n: uint64(v)} }

// Int64 returns an 'l' value.
func Int64(v int64) Value { return Value{kind: KindInt64, n: uint64(v)} }

// Int64L returns a signed 64-bit value written with the letter 'L', as
// py-amqp does. Prefer Int64 for new data.
func Int64L(v int64) Value { return Value{kind: KindInt64L, n: uint64(v)} }

// Float32 returns an 'f' value.
func Float32(v float32) Value { return Value{kind: KindFloat32, n: uint64(math.Float32bits(v))} }

// Float64 returns a 'd' value.
func Float64(v float64) Value { return Value{kind: KindFloat64, n: math.Float64bits(v)} }

// DecimalValue returns a 'D' value.
func DecimalValue(d Decimal) Value {
	return Value{kind: KindDecimal, n: uint64(d.Scale)<<32 | uint64(uint32(d.Value))}
}

// String returns an 'S' (long string) value.
func String(v string) Value { return Value{kind: KindString, s: v} }

// Bytes returns an 'x' (byte array) value holding a copy of b.
func Bytes(b []byte) Value { return Value{kind: KindBytes, s: string(b)} }

// Timestamp returns a 'T' value; AMQP timestamps have whole-second
// precision, so t is truncated to the second. Times before 1970 are not
// representable and become the epoch.
func Timestamp(t time.Time) Value {
	sec := t.Unix()
	if sec < 0 {
		sec = 0
	}
	return Value{kind: KindTimestamp, n: uint64(sec)}
}

// TimestampUnix returns a 'T' value of sec seconds since the epoch: the
// whole unsigned 64-bit range the wire holds, past what time.Time can
// say.
func TimestampUnix(sec uint64) Value { return Value{kind: KindTimestamp, n: sec} }

// TableValue returns an 'F' (nested table) value.
func TableValue(t Table) Value { return Value{kind: KindTable, ref: t} }

// ArrayValue returns an 'A' (field array) value.
func ArrayValue(vs ...Value) Value { return Value{kind: KindArray, ref: vs} }

// Void returns a 'V' value: the zero Value.
func Void() Value { return Value{} }

// Kind returns the value's type letter (void for the zero Value).
func (v Value) Kind() Kind {
	if v.kind == 0 {
		return KindVoid
	}
	return v.kind
}

// IsVoid reports whether v carries no value.
func (v Value) IsVoid() bool { return v.Kind() == KindVoid }

// AsBool returns the boolean of a 't' value.
func (v Value) AsBool() (bool, bool) {
	if v.kind != KindBool {
		return false, false
	}
	return v.n != 0, true
}

// AsInt returns the value of any integer kind as an int64. A 'u', 'i' or
// 'B' value always fits; ok is false for non-integer kinds.
func (v Value) AsInt() (int64, bool) {
	switch v.kind {
	case KindInt8, KindInt16, KindInt32, KindInt64, KindInt64L, KindUint8, KindUint16, KindUint32:
		return int64(v.n), true
	}
	return 0, false
}

// AsFloat returns an 'f', 'd' or 'D' value as a float64.
func (v Value) AsFloat() (float64, bool) {
	switch v.kind {
	case KindFloat32:
		return float64(math.Float32frombits(uint32(v.n))), true
	case KindFloat64:
		return math.Float64frombits(v.n), true
	case KindDecimal:
		d, _ := v.AsDecimal()
		return d.Float64(), true
	}
	return 0, false
}

// AsDecimal returns a 'D' value.
func (v Value) AsDecimal() (Decimal, bool) {
	if v.kind != KindDecimal {
		return Decimal{}, false
	}
	return Decimal{Scale: uint8(v.n >> 32), Value: int32(uint32(v.n))}, true
}

// AsString returns an 'S' or 'x' value's contents as a string.
func (v Value) AsString() (string, bool) {
	return v.s, v.kind == KindString || v.kind == KindBytes
}

// AsBytes returns a copy of an 'S' or 'x' value's contents.
func (v Value) AsBytes() ([]byte, bool) {
	if v.kind != KindString && v.kind != KindBytes {
		return nil, false
	}
	return []byte(v.s), true
}

// AsTime returns a 'T' value as a UTC time.
func (v Value) AsTime() (time.Time, bool) {
	if v.kind != KindTimestamp {
		return time.Time{}, false
	}
	return time.Unix(int64(v.n), 0).UTC(), true
}

// AsTable returns an 'F' value's table. The table is shared, not copied.
func (v Value) AsTable() (Table, bool) {
	t, ok := v.ref.(Table)
	return t, ok && v.kind == KindTable
}

// AsArray returns an 'A' value's elements. The slice is shared, not copied.
func (v Value) AsArray() ([]Value, bool) {
	a, ok := v.ref.([]Value)
	return a, ok && v.kind == KindArray
}

// Interface returns the value as a plain Go value: bool, int8, uint8,
// int16, uint16, int32, uint32, int64 (for 'l' and 'L'), float32, float64,
// Decimal, string, []byte, time.Time, []any, map[string]any, or nil for
// void. The conversion loses the distinction between 'l' and 'L' only.
func (v Value) Interface() any {
	switch v.Kind() {
	case KindBool:
		return v.n != 0
	case KindInt8:
		return int8(v.n)
	case KindUint8:
		return uint8(v.n)
	case KindInt16:
		return int16(v.n)
	case KindUint16:
		return uint16(v.n)
	case KindInt32:
		return int32(v.n)
	case KindUint32:
		return uint32(v.n)
	case KindInt64, KindInt64L:
		return int64(v.n)
	case KindFloat32:
		return math.Float32frombits(uint32(v.n))
	case KindFloat64:
		return math.Float64frombits(v.n)
	case KindDecimal:
		d, _ := v.AsDecimal()
		return d
	case KindString:
		return v.s
	case KindBytes:
		return []byte(v.s)
	case KindTimestamp:
		t, _ := v.AsTime()
		return t
	case KindTable:
		t, _ := v.AsTable()
		return t.Map()
	case KindArray:
		a, _ := v.AsArray()
		out := make([]any, len(a))
		for i, e := range a {
			out[i] = e.Interface()
		}
		return out
	}
	return nil
}

// String formats the value for people, e.g. `I:42` or `S:"text"`.
func (v Value) String() string {
	switch v.Kind() {
	case KindString:
		return fmt.Sprintf("S:%q", v.s)
	case KindBytes:
		return fmt.Sprintf("x:%x", v.s)
	case KindTimestamp:
		t, _ := v.AsTime()
		return "T:" + t.Format(time.RFC3339)
	case KindVoid:
		return "V"
	}
	return fmt.Sprintf("%c:%v", byte(v.Kind()), v.Interface())
}

// ValueOf converts a plain Go value to a Value: bool, every sized integer
// (int and uint become 'l'; uint64 must fit in int64), float32, float64,
// Decimal, string, []byte, time.Time, Table, map[string]any, []any, []Value,
// Value itself, and nil (void).
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return Void(), nil
	case Value:
		return x, nil
	case bool:
		return Bool(x), nil
	case int8:
		return Int8(x), nil
	case uint8:
		return Uint8(x), nil
	case int16:
		return Int16(x), nil
	case uint16:
		return Uint16(x), nil
	case int32:
		return Int32(x), nil
	case uint32:
		return Uint32(x), nil
	case int64:
		return Int64(x), nil
	case int:
		return Int64(int64(x)), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return Value{}, fmt.Errorf("amqp: uint %d does not fit a signed 64-bit field", x)
		}
		return Int64(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return Value{}, fmt.Errorf("amqp: uint64 %d does not fit a signed 64-bit field", x)
		}
		return Int64(int64(x)), nil
	case float32:
		return Float32(x), nil
	case float64:
		return Float64(x), nil
	case Decimal:
		return DecimalValue(x), nil
	case string:
		return String(x), nil
	case []byte:
		return Bytes(x), nil
	case time.Time:
		return Timestamp(x), nil
	case Table:
		return TableValue(x), nil
	case map[string]any:
		t, err := TableFromMap(x)
		if err != nil {
			return Value{}, err
		}
		return TableValue(t), nil
	case []Value:
		return ArrayValue(x...), nil
	case []any:
		vs := make([]Value, len(x))
		for i, e := range x {
			v, err := ValueOf(e)
			if err != nil {
				return Value{}, fmt.Errorf("array element %d: %w", i, err)
			}
			vs[i] = v
		}
		return ArrayValue(vs...), nil
	}
	return Value{}, fmt.Errorf("amqp: no field type for Go type %T", x)
}
