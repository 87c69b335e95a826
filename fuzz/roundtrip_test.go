package fuzz

import (
	"errors"
	"math"
	"testing"
	"time"

	gofuzz "github.com/google/gofuzz"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// FuzzMethodRoundTrip fills a method struct, chosen from frames.Methods()
// by the first input byte, with values that gofuzz derives from the rest of
// the input, and requires encode → decode → equal. It reaches method
// values that decoding arbitrary bytes rarely builds (long strings, deep
// and wide tables of every field kind).
func FuzzMethodRoundTrip(f *testing.F) {
	f.Add([]byte{0})
	for _, v := range handMadeMethods {
		f.Add(v.args)
	}
	for _, b := range handMadeStreams() {
		f.Add(b)
	}
	f.Add(tableEveryType)
	f.Add(propsAll)

	methods := frames.Methods()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		k := methods[int(data[0])%len(methods)]
		m := frames.NewMethod(k)
		isTrue(t, m != nil, "NewMethod(%s) is nil", k)
		newMethodFuzzer(data[1:]).Fuzz(m)

		enc, err := frames.AppendMethodArgs(nil, m)
		if errors.Is(err, proto.ErrTooDeep) {
			return // the generator nests past MaxNestingDepth now and then
		}
		noError(t, err, "%s does not encode", k)
		got, err := frames.DecodeMethod(0, enc)
		noError(t, err, "%s does not decode what it encoded: %x", k, enc)
		equal(t, m, got, "%s changed across encode and decode", k)
		enc2, err := frames.AppendMethodArgs(nil, got)
		noError(t, err)
		equal(t, enc, enc2, "%s encodes differently the second time", k)

		frame, err := frames.AppendMethod(nil, 42, m)
		noError(t, err)
		fr, n, err := frames.ReadFrame(frame, 0)
		noError(t, err)
		equal(t, len(frame), n)
		equal(t, enc, fr.Payload)
	})
}

// newMethodFuzzer returns a gofuzz Fuzzer driven by data, with strings kept
// to short-string size and tables built from random proto.Values.
func newMethodFuzzer(data []byte) *gofuzz.Fuzzer {
	return gofuzz.NewFromGoFuzz(data).Funcs(
		func(s *string, c gofuzz.Continue) { *s = randString(c, 255) },
		func(t *proto.Table, c gofuzz.Continue) { *t = randTable(c, 0) },
	)
}

// randString returns up to max random bytes, mostly few.
func randString(c gofuzz.Continue, max int) string {
	n := c.Intn(9)
	if c.Intn(8) == 0 {
		n = c.Intn(max + 1)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(c.Uint32())
	}
	return string(b)
}

// maxRandDepth bounds how deeply randValue nests tables and arrays, except
// for the occasional deep chain that probes MaxNestingDepth.
const maxRandDepth = 3

// randTable returns a table of up to four fields, nil when empty, as the
// decoder returns an empty table.
func randTable(c gofuzz.Continue, depth int) proto.Table {
	var t proto.Table
	for n := c.Intn(5); n > 0; n-- {
		t = append(t, proto.Field{Name: randString(c, 255), Value: randValue(c, depth)})
	}
	return t
}

// randValue returns a random value of any kind.
func randValue(c gofuzz.Continue, depth int) proto.Value {
	if c.Intn(64) == 0 {
		return deepChain(c, proto.MaxNestingDepth-2+c.Intn(4))
	}
	kinds := []proto.Kind{
		proto.KindBool, proto.KindInt8, proto.KindUint8, proto.KindInt16, proto.KindUint16,
		proto.KindInt32, proto.KindUint32, proto.KindInt64, proto.KindInt64L, proto.KindFloat32,
		proto.KindFloat64, proto.KindDecimal, proto.KindString, proto.KindBytes, proto.KindArray,
		proto.KindTimestamp, proto.KindTable, proto.KindVoid,
	}
	switch k := kinds[c.Intn(len(kinds))]; k {
	case proto.KindBool:
		return proto.Bool(c.RandBool())
	case proto.KindInt8:
		return proto.Int8(int8(c.Uint32()))
	case proto.KindUint8:
		return proto.Uint8(uint8(c.Uint32()))
	case proto.KindInt16:
		return proto.Int16(int16(c.Uint32()))
	case proto.KindUint16:
		return proto.Uint16(uint16(c.Uint32()))
	case proto.KindInt32:
		return proto.Int32(int32(c.Uint32()))
	case proto.KindUint32:
		return proto.Uint32(c.Uint32())
	case proto.KindInt64:
		return proto.Int64(int64(c.Uint64()))
	case proto.KindInt64L:
		return proto.Int64L(int64(c.Uint64()))
	case proto.KindFloat32:
		return proto.Float32(math.Float32frombits(c.Uint32())) // NaNs included
	case proto.KindFloat64:
		return proto.Float64(math.Float64frombits(c.Uint64()))
	case proto.KindDecimal:
		return proto.DecimalValue(proto.Decimal{Scale: uint8(c.Uint32()), Value: int32(c.Uint32())})
	case proto.KindString:
		return proto.String(randString(c, 300))
	case proto.KindBytes:
		return proto.Bytes([]byte(randString(c, 300)))
	case proto.KindTimestamp:
		return proto.Timestamp(time.Unix(c.Int63(), 0))
	case proto.KindTable:
		if depth >= maxRandDepth {
			return proto.TableValue(nil)
		}
		return proto.TableValue(randTable(c, depth+1))
	case proto.KindArray:
		if depth >= maxRandDepth {
			return proto.ArrayValue()
		}
		var vs []proto.Value // nil when empty, as the decoder returns it
		for n := c.Intn(4); n > 0; n-- {
			vs = append(vs, randValue(c, depth+1))
		}
		return proto.ArrayValue(vs...)
	}
	return proto.Void()
}

// deepChain returns tables and arrays nested n deep around a void.
func deepChain(c gofuzz.Continue, n int) proto.Value {
	v := proto.Void()
	for ; n > 0; n-- {
		if c.RandBool() {
			v = proto.ArrayValue(v)
		} else {
			v = proto.TableValue(proto.Table{{Name: "d", Value: v}})
		}
	}
	return v
}
