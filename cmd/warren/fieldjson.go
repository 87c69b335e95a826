package main

// The JSON mapping of AMQP field values (headers, arguments). See README.md.
//
// Output (consume/get --json):
//
//	S  valid UTF-8   → JSON string
//	S  other bytes   → {"type":"S","base64":"…"}
//	t                → true / false
//	I (int32)        → JSON number
//	F                → JSON object in field order; a table with a field named
//	                   "type" is wrapped: {"type":"F","value":{…}}
//	A                → JSON array
//	V                → null
//	b B s u i        → {"type":"b","value":-5} (number)
//	l L              → {"type":"l","value":"1099511627776"} (decimal string)
//	f d              → {"type":"d","value":2.5}; NaN and infinities as the
//	                   strings "NaN", "Infinity", "-Infinity"
//	D                → {"type":"D","scale":2,"value":314} (= 3.14)
//	T                → {"type":"T","value":"2024-05-06T07:08:09Z"}
//	x                → {"type":"x","base64":"…"}
//
// Input (publish --headers-json, --args-json) accepts all of the above, so
// the headers printed by consume --json can be published again, and also
// bare numbers: an integer becomes 'l' (signed 64-bit), any other number
// 'd' (double). An object is read as a typed value only when its "type" is
// one of the letters above and its other keys are the ones of that form;
// any other object is a nested table.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warren-amqp/warren/proto"
)

// appendJSONString appends s as a JSON string (s must be valid UTF-8 for
// a faithful result), without HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// appendTableJSON appends the table as a JSON object, fields in order.
func appendTableJSON(b []byte, t proto.Table) []byte {
	b = append(b, '{')
	for i, f := range t {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, jsonSafe(f.Name))
		b = append(b, ':')
		b = appendValueJSON(b, f.Value)
	}
	return append(b, '}')
}

// jsonSafe makes a field name valid UTF-8 (field names are short strings
// of any bytes; invalid bytes become U+FFFD).
func jsonSafe(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func typed(b []byte, kind proto.Kind) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, byte(kind))
	return append(b, '"', ',')
}

// appendValueJSON appends one field value in the output mapping.
func appendValueJSON(b []byte, v proto.Value) []byte {
	k := v.Kind()
	switch k {
	case proto.KindVoid:
		return append(b, "null"...)
	case proto.KindBool:
		x, _ := v.AsBool()
		return strconv.AppendBool(b, x)
	case proto.KindString:
		s, _ := v.AsString()
		if utf8.ValidString(s) {
			return appendJSONString(b, s)
		}
		b = typed(b, k)
		b = append(b, `"base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(s))
		return append(b, '"', '}')
	case proto.KindBytes:
		s, _ := v.AsBytes()
		b = typed(b, k)
		b = append(b, `"base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, s)
		return append(b, '"', '}')
	case proto.KindInt8, proto.KindUint8, proto.KindInt16, proto.KindUint16, proto.KindInt32, proto.KindUint32:
		n, _ := v.AsInt()
		b = typed(b, k)
		b = append(b, `"value":`...)
		b = strconv.AppendInt(b, n, 10)
		return append(b, '}')
	case proto.KindInt64, proto.KindInt64L:
		n, _ := v.AsInt()
		b = typed(b, k)
		b = append(b, `"value":"`...)
		b = strconv.AppendInt(b, n, 10)
		return append(b, '"', '}')
	case proto.KindFloat32, proto.KindFloat64:
		f, _ := v.AsFloat()
		bits := 64
		if k == proto.KindFloat32 {
			bits = 32
		}
		b = typed(b, k)
		b = append(b, `"value":`...)
		switch {
		case math.IsNaN(f):
			b = append(b, `"NaN"`...)
		case math.IsInf(f, 1):
			b = append(b, `"Infinity"`...)
		case math.IsInf(f, -1):
			b = append(b, `"-Infinity"`...)
		default:
			b = strconv.AppendFloat(b, f, 'g', -1, bits)
		}
		return append(b, '}')
	case proto.KindDecimal:
		d, _ := v.AsDecimal()
		b = typed(b, k)
		b = append(b, `"scale":`...)
		b = strconv.AppendUint(b, uint64(d.Scale), 10)
		b = append(b, `,"value":`...)
		b = strconv.AppendInt(b, int64(d.Value), 10)
		return append(b, '}')
	case proto.KindTimestamp:
		t, _ := v.AsTime()
		b = typed(b, k)
		b = append(b, `"value":"`...)
		if sec := t.Unix(); sec >= 0 && t.Year() <= 9999 {
			b = t.UTC().AppendFormat(b, time.RFC3339)
		} else { // beyond year 9999 (or wrapped): the seconds, unsigned
			b = strconv.AppendUint(b, uint64(sec), 10)
		}
		return append(b, '"', '}')
	case proto.KindTable:
		t, _ := v.AsTable()
		if _, hasType := t.Get("type"); hasType {
			b = typed(b, k)
			b = append(b, `"value":`...)
			b = appendTableJSON(b, t)
			return append(b, '}')
		}
		return appendTableJSON(b, t)
	case proto.KindArray:
		a, _ := v.AsArray()
		b = append(b, '[')
		for i, e := range a {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValueJSON(b, e)
		}
		return append(b, ']')
	}
	// Unknown kinds cannot be decoded by proto, so this is not reached.
	return appendJSONString(b, v.String())
}

// jnode is a parsed JSON value that keeps the order of object keys.
type jnode struct {
	kind byte // 'n' null, 'b' bool, 's' string, '1' number, 'a' array, 'o' object
	b    bool
	s    string // string, or number text
	arr  []jnode
	obj  []jfield
}

type jfield struct {
	name string
	val  jnode
}

func (n *jnode) get(name string) (jnode, bool) {
	for _, f := range n.obj {
		if f.name == name {
			return f.val, true
		}
	}
	return jnode{}, false
}

// parseTableJSON parses a JSON object into a field table.
func parseTableJSON(s string) (proto.Table, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	n, err := readJSON(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: text after the object")
	}
	if n.kind != 'o' {
		return nil, errors.New("want a JSON object")
	}
	return jsonTable(n.obj, "")
}

func readJSON(dec *json.Decoder, depth int) (jnode, error) {
	if depth > proto.MaxNestingDepth {
		return jnode{}, proto.ErrTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return jnode{}, err
	}
	switch t := tok.(type) {
	case nil:
		return jnode{kind: 'n'}, nil
	case bool:
		return jnode{kind: 'b', b: t}, nil
	case string:
		return jnode{kind: 's', s: t}, nil
	case json.Number:
		return jnode{kind: '1', s: string(t)}, nil
	case json.Delim:
		switch t {
		case '[':
			n := jnode{kind: 'a', arr: []jnode{}}
			for dec.More() {
				e, err := readJSON(dec, depth+1)
				if err != nil {
					return jnode{}, err
				}
				n.arr = append(n.arr, e)
			}
			_, err := dec.Token() // ]
			return n, err
		case '{':
			n := jnode{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jnode{}, err
				}
				key, _ := kt.(string)
				v, err := readJSON(dec, depth+1)
				if err != nil {
					return jnode{}, err
				}
				n.obj = append(n.obj, jfield{key, v})
			}
			_, err := dec.Token() // }
			return n, err
		}
	}
	return jnode{}, fmt.Errorf("unexpected %v", tok)
}

func jsonTable(fields []jfield, path string) (proto.Table, error) {
	t := make(proto.Table, 0, len(fields))
	for _, f := range fields {
		p := f.name
		if path != "" {
			p = path + "." + f.name
		}
		v, err := jsonValue(f.val, p)
		if err != nil {
			return nil, err
		}
		t = append(t, proto.Field{Name: f.name, Value: v})
	}
	return t, nil
}

// typedKeys lists, for each type letter, the keys its typed form may have
// besides "type".
var typedKeys = map[byte][]string{
	't': {"value"}, 'b': {"value"}, 'B': {"value"}, 's': {"value"}, 'u': {"value"},
	'I': {"value"}, 'i': {"value"}, 'l': {"value"}, 'L': {"value"}, 'f': {"value"},
	'd': {"value"}, 'D': {"scale", "value"}, 'S': {"value", "base64"}, 'x': {"base64", "value"},
	'A': {"value"}, 'T': {"value"}, 'F': {"value"}, 'V': {"value"},
}

// typedKind reports whether the object n is a typed value, and its letter.
func typedKind(n jnode) (byte, bool) {
	tn, ok := n.get("type")
	if !ok || tn.kind != 's' || len(tn.s) != 1 {
		return 0, false
	}
	allowed, ok := typedKeys[tn.s[0]]
	if !ok {
		return 0, false
	}
	for _, f := range n.obj {
		if f.name == "type" {
			continue
		}
		found := false
		for _, a := range allowed {
			found = found || f.name == a
		}
		if !found {
			return 0, false
		}
	}
	return tn.s[0], true
}

func jsonValue(n jnode, path string) (proto.Value, error) {
	switch n.kind {
	case 'n':
		return proto.Void(), nil
	case 'b':
		return proto.Bool(n.b), nil
	case 's':
		return proto.String(n.s), nil
	case '1':
		if !strings.ContainsAny(n.s, ".eE") {
			i, err := strconv.ParseInt(n.s, 10, 64)
			if err != nil {
				return proto.Value{}, fmt.Errorf("%s: integer %s does not fit a signed 64-bit field", path, n.s)
			}
			return proto.Int64(i), nil
		}
		f, err := strconv.ParseFloat(n.s, 64)
		if err != nil {
			return proto.Value{}, fmt.Errorf("%s: number %s: %w", path, n.s, err)
		}
		return proto.Float64(f), nil
	case 'a':
		vs := make([]proto.Value, len(n.arr))
		for i, e := range n.arr {
			v, err := jsonValue(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return proto.Value{}, err
			}
			vs[i] = v
		}
		return proto.ArrayValue(vs...), nil
	case 'o':
		if k, ok := typedKind(n); ok {
			v, err := jsonTyped(k, n, path)
			if err != nil {
				return proto.Value{}, fmt.Errorf("%s: typed value %q: %w", path, string(k), err)
			}
			return v, nil
		}
		t, err := jsonTable(n.obj, path)
		if err != nil {
			return proto.Value{}, err
		}
		return proto.TableValue(t), nil
	}
	return proto.Value{}, fmt.Errorf("%s: unsupported JSON value", path)
}

// jsonTyped decodes a typed object of kind k.
func jsonTyped(k byte, n jnode, path string) (proto.Value, error) {
	val, hasVal := n.get("value")
	intVal := func(lo, hi int64) (int64, error) {
		if !hasVal {
			return 0, errors.New(`missing "value"`)
		}
		if val.kind != '1' && val.kind != 's' {
			return 0, errors.New(`"value" must be an integer`)
		}
		i, err := strconv.ParseInt(val.s, 10, 64)
		if err != nil || i < lo || i > hi {
			return 0, fmt.Errorf(`"value" %s is not an integer in [%d, %d]`, val.s, lo, hi)
		}
		return i, nil
	}
	switch k {
	case 't':
		if !hasVal || val.kind != 'b' {
			return proto.Value{}, errors.New(`"value" must be true or false`)
		}
		return proto.Bool(val.b), nil
	case 'b':
		i, err := intVal(math.MinInt8, math.MaxInt8)
		return proto.Int8(int8(i)), err
	case 'B':
		i, err := intVal(0, math.MaxUint8)
		return proto.Uint8(uint8(i)), err
	case 's':
		i, err := intVal(math.MinInt16, math.MaxInt16)
		return proto.Int16(int16(i)), err
	case 'u':
		i, err := intVal(0, math.MaxUint16)
		return proto.Uint16(uint16(i)), err
	case 'I':
		i, err := intVal(math.MinInt32, math.MaxInt32)
		return proto.Int32(int32(i)), err
	case 'i':
		i, err := intVal(0, math.MaxUint32)
		return proto.Uint32(uint32(i)), err
	case 'l':
		i, err := intVal(math.MinInt64, math.MaxInt64)
		return proto.Int64(i), err
	case 'L':
		i, err := intVal(math.MinInt64, math.MaxInt64)
		return proto.Int64L(i), err
	case 'f', 'd':
		if !hasVal || (val.kind != '1' && val.kind != 's') {
			return proto.Value{}, errors.New(`"value" must be a number, "NaN", "Infinity" or "-Infinity"`)
		}
		bits := 64
		if k == 'f' {
			bits = 32
		}
		f, err := strconv.ParseFloat(val.s, bits)
		if err != nil {
			return proto.Value{}, fmt.Errorf(`"value" %q is not a number`, val.s)
		}
		if k == 'f' {
			return proto.Float32(float32(f)), nil
		}
		return proto.Float64(f), nil
	case 'D':
		sc, ok := n.get("scale")
		if !ok || sc.kind != '1' {
			return proto.Value{}, errors.New(`missing integer "scale"`)
		}
		scale, err := strconv.ParseUint(sc.s, 10, 8)
		if err != nil {
			return proto.Value{}, fmt.Errorf(`"scale" %s is not in [0, 255]`, sc.s)
		}
		i, err := intVal(math.MinInt32, math.MaxInt32)
		return proto.DecimalValue(proto.Decimal{Scale: uint8(scale), Value: int32(i)}), err
	case 'S', 'x':
		var raw []byte
		if b64, ok := n.get("base64"); ok {
			if b64.kind != 's' || hasVal {
				return proto.Value{}, errors.New(`want either "base64" (a string) or "value"`)
			}
			var err error
			if raw, err = base64.StdEncoding.DecodeString(b64.s); err != nil {
				return proto.Value{}, fmt.Errorf(`"base64": %w`, err)
			}
		} else if hasVal && val.kind == 's' {
			raw = []byte(val.s)
		} else {
			return proto.Value{}, errors.New(`want "base64" or a string "value"`)
		}
		if k == 'x' {
			return proto.Bytes(raw), nil
		}
		return proto.String(string(raw)), nil
	case 'T':
		if !hasVal {
			return proto.Value{}, errors.New(`missing "value"`)
		}
		if val.kind == 's' {
			if t, err := time.Parse(time.RFC3339, val.s); err == nil {
				if t.Unix() < 0 {
					return proto.Value{}, errors.New("timestamps before 1970 cannot be sent")
				}
				return proto.Timestamp(t), nil
			}
		}
		sec, err := strconv.ParseUint(val.s, 10, 64) // the wire's whole range, as the output writes it
		if err != nil {
			return proto.Value{}, errors.New(`"value" must be an RFC 3339 time or non-negative Unix seconds`)
		}
		return proto.TimestampUnix(sec), nil
	case 'A':
		if !hasVal || val.kind != 'a' {
			return proto.Value{}, errors.New(`"value" must be an array`)
		}
		return jsonValue(val, path)
	case 'F':
		if !hasVal || val.kind != 'o' {
			return proto.Value{}, errors.New(`"value" must be an object`)
		}
		t, err := jsonTable(val.obj, path)
		return proto.TableValue(t), err
	case 'V':
		if hasVal && val.kind != 'n' {
			return proto.Value{}, errors.New(`"value" must be null`)
		}
		return proto.Void(), nil
	}
	return proto.Value{}, errors.New("unknown type")
}
