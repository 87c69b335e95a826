package bench

import (
	"testing"

	"github.com/warren-amqp/warren/proto"
)

// sinkTable keeps BenchmarkTableDecode's result alive.
var sinkTable proto.Table

func BenchmarkParseDeliver(b *testing.B) { benchmarkParseDeliver(b, 64) }

func BenchmarkParseDeliver4K(b *testing.B) { benchmarkParseDeliver(b, 4096) }

func benchmarkParseDeliver(b *testing.B, bodySize int) {
	mp, size := newMessageParser(b, bodySize)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := mp.next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	pb, size := newPublisher(b)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := pb.publish(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTableDecode(b *testing.B) {
	enc, err := proto.AppendTable(nil, headersTable)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		t, n, err := proto.ReadTable(enc)
		if err != nil || n != len(enc) {
			b.Fatalf("ReadTable: %d of %d bytes, %v", n, len(enc), err)
		}
		sinkTable = t
	}
}

// TestFixtures checks that the benchmark inputs parse to what they were
// built from, so that the benchmarks measure working code; it runs with
// every `go test`, the race detector included.
func TestFixtures(t *testing.T) {
	for _, size := range []int{64, 4096} {
		newMessageParser(t, size) // parses and checks a whole buffer
	}
	pb, size := newPublisher(t)
	if size != len(pb.buf) || size < 64 {
		t.Fatalf("publish of %d bytes", size)
	}
	enc, err := proto.AppendTable(nil, headersTable)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := proto.ReadTable(enc)
	if err != nil || n != len(enc) || len(got) != 8 {
		t.Fatalf("ReadTable: %d fields, %d of %d bytes, %v", len(got), n, len(enc), err)
	}
}
