package proto

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/warren-amqp/warren/proto/internal/wire"
)

// MaxNestingDepth is how deeply tables and arrays may nest inside one
// another. Decoding deeper input fails with ErrTooDeep instead of recursing
// without bound; encoding a deeper (or cyclic) value fails the same way.
const MaxNestingDepth = 32

// ErrTooDeep reports tables or arrays nested deeper than MaxNestingDepth.
var ErrTooDeep = errors.New("amqp: field tables nested too deeply")

// ErrMalformedTable reports field-table bytes that cannot be decoded.
var ErrMalformedTable = errors.New("amqp: malformed field table")

// Field is one named entry of a Table.
type Field struct {
	Name  string
	Value Value
}

// Table is an AMQP field table: an ordered list of named values. Order is
// kept so that a decoded table re-encodes to the same bytes. Use it for
// message headers and for the arguments of declare, bind and consume.
//
// A Table literal reads naturally:
//
//	proto.Table{{"x-max-length", proto.Int32(10)}, {"x-overflow", proto.String("reject-publish")}}
type Table []Field

// Get returns the value of the first field named name.
func (t Table) Get(name string) (Value, bool) {
	for i := range t {
		if t[i].Name == name {
			return t[i].Value, true
		}
	}
	return Value{}, false
}

// Set replaces the value of the field named name, or appends the field.
func (t *Table) Set(name string, v Value) {
	for i := range *t {
		if (*t)[i].Name == name {
			(*t)[i].Value = v
			return
		}
	}
	*t = append(*t, Field{Name: name, Value: v})
}

// SetAny is Set with a plain Go value converted by ValueOf.
func (t *Table) SetAny(name string, x any) error {
	v, err := ValueOf(x)
	if err != nil {
		return fmt.Errorf("field %q: %w", name, err)
	}
	t.Set(name, v)
	return nil
}

// Delete removes every field named name and reports whether one existed.
// It builds a new slice, so tables sharing t's memory are not changed.
func (t *Table) Delete(name string) bool {
	var out Table
	found := false
	for i, f := range *t {
		if f.Name == name {
			if !found {
				out = append(make(Table, 0, len(*t)-1), (*t)[:i]...)
				found = true
			}
			continue
		}
		if found {
			out = append(out, f)
		}
	}
	if found {
		*t = out
	}
	return found
}

// Map returns the table as a map of plain Go values (see Value.Interface).
// Order and duplicate names are lost.
func (t Table) Map() map[string]any {
	m := make(map[string]any, len(t))
	for _, f := range t {
		m[f.Name] = f.Value.Interface()
	}
	return m
}

// TableFromMap builds a Table from plain Go values (see ValueOf), with the
// fields sorted by name so the encoding is deterministic.
func TableFromMap(m map[string]any) (Table, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	t := make(Table, 0, len(m))
	for _, k := range names {
		v, err := ValueOf(m[k])
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		t = append(t, Field{Name: k, Value: v})
	}
	return t, nil
}

// AppendTable appends t with its four-byte length prefix, as a table field
// of a method or property is written.
func AppendTable(dst []byte, t Table) ([]byte, error) {
	return appendTable(dst, t, 0)
}

// AppendTableFields appends t's fields without the length prefix (the
// shape of an AMQPLAIN response).
func AppendTableFields(dst []byte, t Table) ([]byte, error) {
	start := len(dst)
	out, err := appendFields(dst, t, 0)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func appendTable(dst []byte, t Table, depth int) ([]byte, error) {
	start := len(dst)
	dst = wire.AppendLong(dst, 0)
	dst, err := appendFields(dst, t, depth)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - 4
	if uint64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("amqp: field table of %d bytes is too large", n)
	}
	wire.PutLong(dst, start, uint32(n))
	return dst, nil
}

func appendFields(dst []byte, t Table, depth int) ([]byte, error) {
	if depth >= MaxNestingDepth {
		return dst, ErrTooDeep
	}
	for _, f := range t {
		var err error
		if dst, err = wire.AppendShortStr(dst, f.Name); err != nil {
			return dst, fmt.Errorf("amqp: field name: %w", err)
		}
		if dst, err = appendValue(dst, f.Value, depth); err != nil {
			return dst, fmt.Errorf("field %q: %w", f.Name, err)
		}
	}
	return dst, nil
}

func appendValue(dst []byte, v Value, depth int) ([]byte, error) {
	k := v.Kind()
	dst = append(dst, byte(k))
	switch k {
	case KindBool, KindInt8, KindUint8:
		return append(dst, byte(v.n)), nil
	case KindInt16, KindUint16:
		return wire.AppendShort(dst, uint16(v.n)), nil
	case KindInt32, KindUint32, KindFloat32:
		return wire.AppendLong(dst, uint32(v.n)), nil
	case KindInt64, KindInt64L, KindFloat64, KindTimestamp:
		return wire.AppendLongLong(dst, v.n), nil
	case KindDecimal:
		dst = append(dst, byte(v.n>>32))
		return wire.AppendLong(dst, uint32(v.n)), nil
	case KindString, KindBytes:
		return wire.AppendLongStr(dst, v.s), nil
	case KindVoid:
		return dst, nil
	case KindTable:
		t, _ := v.ref.(Table)
		return appendTable(dst, t, depth+1)
	case KindArray:
		if depth+1 >= MaxNestingDepth {
			return dst, ErrTooDeep
		}
		a, _ := v.ref.([]Value)
		start := len(dst)
		dst = wire.AppendLong(dst, 0)
		for i, e := range a {
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		if n := len(dst) - start - 4; uint64(n) > math.MaxUint32 {
			return dst[:start], fmt.Errorf("amqp: field array of %d bytes is too large", n)
		}
		wire.PutLong(dst, start, uint32(len(dst)-start-4))
		return dst, nil
	}
	return dst, fmt.Errorf("amqp: cannot encode field kind %v", k)
}

// ReadTable decodes a length-prefixed table from the front of b and reports
// how many bytes it used. The decoded table owns its memory; nothing aliases b.
func ReadTable(b []byte) (Table, int, error) {
	r := wire.NewReader(b)
	body := r.LongStr()
	if err := r.Err(); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrMalformedTable, err)
	}
	t, err := decodeFields(body, 0)
	if err != nil {
		return nil, 0, err
	}
	return t, r.Offset(), nil
}

// DecodeTableFields decodes table fields that fill all of b (a table body
// without its length prefix). An empty b gives a nil Table.
func DecodeTableFields(b []byte) (Table, error) { return decodeFields(b, 0) }

func decodeFields(b []byte, depth int) (Table, error) {
	if depth >= MaxNestingDepth {
		return nil, ErrTooDeep
	}
	if len(b) == 0 {
		return nil, nil
	}
	var t Table
	r := wire.NewReader(b)
	for r.Len() > 0 {
		name := r.ShortStr()
		if r.Err() != nil {
			return nil, fmt.Errorf("%w: field name: %v", ErrMalformedTable, r.Err())
		}
		v, err := readValue(&r, depth)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
		t = append(t, Field{Name: string(name), Value: v})
	}
	return t, nil
}

func readValue(r *wire.Reader, depth int) (Value, error) {
	k := Kind(r.Octet())
	v := Value{kind: k}
	if k == KindVoid {
		v.kind = 0 // the zero Value is void
	}
	switch k {
	case KindBool, KindUint8:
		v.n = uint64(r.Octet())
		if k == KindBool && v.n > 1 {
			v.n = 1 // any non-zero octet is true; keep the canonical form
		}
	case KindInt8:
		v.n = uint64(int64(int8(r.Octet())))
	case KindInt16:
		v.n = uint64(int64(int16(r.Short())))
	case KindUint16:
		v.n = uint64(r.Short())
	case KindInt32:
		v.n = uint64(int64(int32(r.Long())))
	case KindUint32, KindFloat32:
		v.n = uint64(r.Long())
	case KindInt64, KindInt64L, KindFloat64, KindTimestamp:
		v.n = r.LongLong()
	case KindDecimal:
		scale := r.Octet()
		v.n = uint64(scale)<<32 | uint64(r.Long())
	case KindString, KindBytes:
		v.s = string(r.LongStr())
	case KindVoid:
	case KindTable:
		body := r.LongStr()
		if r.Err() != nil {
			break
		}
		t, err := decodeFields(body, depth+1)
		if err != nil {
			return Value{}, err
		}
		v.ref = t
	case KindArray:
		body := r.LongStr()
		if r.Err() != nil {
			break
		}
		if depth+1 >= MaxNestingDepth {
			return Value{}, ErrTooDeep
		}
		var a []Value
		ar := wire.NewReader(body)
		for ar.Len() > 0 {
			e, err := readValue(&ar, depth+1)
			if err != nil {
				return Value{}, fmt.Errorf("array element %d: %w", len(a), err)
			}
			a = append(a, e)
		}
		v.ref = a
	default:
		if r.Err() == nil {
			return Value{}, fmt.Errorf("%w: unknown field type 0x%02x", ErrMalformedTable, byte(k))
		}
		return Value{}, fmt.Errorf("%w: field type: %v", ErrMalformedTable, r.Err())
	}
	if err := r.Err(); err != nil {
		return Value{}, fmt.Errorf("%w: %v value: %v", ErrMalformedTable, k, err)
	}
	return v, nil
}
