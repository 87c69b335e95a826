package fuzz

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// recordedDir is the recorded RabbitMQ traffic, relative to this package's
// directory: testdata/rabbitmq-3.10.8 at the repository's root.
var recordedDir = filepath.Join("..", "testdata", "rabbitmq-3.10.8")

// recordedStreams returns every recorded *.bin stream, client streams
// without their 8-byte protocol header, in name order. The recordings are
// part of the repository: it fails when they cannot be read.
func recordedStreams(tb testing.TB) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(recordedDir, "*.bin"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no recordings in %s (%v)", recordedDir, err)
	}
	sort.Strings(paths)
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatalf("reading recorded stream: %v", err)
		}
		if strings.HasSuffix(p, ".client.bin") {
			b = bytes.TrimPrefix(b, []byte(frames.ProtocolHeader))
		}
		out = append(out, b)
	}
	return out
}

// recordedFrames splits every recorded stream into frames (payloads are
// copies). It stops a stream at its first incomplete or bad frame.
func recordedFrames(tb testing.TB) []frames.Frame {
	tb.Helper()
	var out []frames.Frame
	for _, s := range recordedStreams(tb) {
		for len(s) > 0 {
			f, n, err := frames.ReadFrame(s, 0)
			if err != nil || n == 0 {
				break
			}
			f.Payload = bytes.Clone(f.Payload)
			out = append(out, f)
			s = s[n:]
		}
	}
	return out
}

// windowSize bounds the recorded windows FuzzFrameReader starts from.
const windowSize = 1024

// recordedWindows cuts every recorded stream into runs of whole frames of
// at most windowSize bytes (a frame larger than that is left out). The
// whole streams, up to 300 KB, make slow fuzz inputs; these small slices
// of real traffic keep most executions fast.
func recordedWindows(tb testing.TB) [][]byte {
	var out [][]byte
	for _, s := range recordedStreams(tb) {
		start, end := 0, 0
		for end < len(s) {
			_, n, err := frames.ReadFrame(s[end:], 0)
			if err != nil || n == 0 {
				break
			}
			if end+n-start > windowSize {
				if end > start {
					out = append(out, s[start:end])
				}
				start = end
				if n > windowSize {
					start = end + n
				}
			}
			end += n
		}
		if end > start {
			out = append(out, s[start:end])
		}
	}
	return out
}

// recordedMethodPayloads returns the payloads of the recorded method frames.
func recordedMethodPayloads(tb testing.TB) [][]byte {
	var out [][]byte
	for _, f := range recordedFrames(tb) {
		if f.Type == frames.FrameMethod {
			out = append(out, f.Payload)
		}
	}
	return out
}

// recordedPropertyLists returns the property lists (flags word onwards) of
// the recorded content headers.
func recordedPropertyLists(tb testing.TB) [][]byte {
	var out [][]byte
	for _, f := range recordedFrames(tb) {
		if f.Type == frames.FrameHeader && len(f.Payload) >= 12 {
			out = append(out, f.Payload[12:])
		}
	}
	return out
}

// recordedTables returns length-prefixed field tables taken from the
// recordings: the raw bytes of connection.start's server-properties,
// connection.start-ok's client-properties and every message's headers, and
// re-encodings of every other table argument the recorded methods carry.
func recordedTables(tb testing.TB) [][]byte {
	var out [][]byte
	for _, f := range recordedFrames(tb) {
		switch f.Type {
		case frames.FrameMethod:
			if len(f.Payload) < 4 {
				continue
			}
			k := frames.Key(binary.BigEndian.Uint16(f.Payload), binary.BigEndian.Uint16(f.Payload[2:]))
			args := f.Payload[4:]
			switch k {
			case frames.MethodConnectionStart:
				if len(args) > 2 {
					out = append(out, args[2:]) // after version-major and version-minor
				}
			case frames.MethodConnectionStartOK:
				out = append(out, args)
			}
			m, err := frames.DecodeMethod(f.Channel, f.Payload)
			if err != nil {
				continue
			}
			v := reflect.ValueOf(m).Elem()
			for i := 0; i < v.NumField(); i++ {
				t, ok := v.Field(i).Interface().(proto.Table)
				if !ok || len(t) == 0 {
					continue
				}
				if enc, err := proto.AppendTable(nil, t); err == nil {
					out = append(out, enc)
				}
			}
		case frames.FrameHeader:
			var h frames.ContentHeader
			if h.Parse(f.Channel, f.Payload) != nil || h.Properties.Flags&proto.FlagHeaders == 0 {
				continue
			}
			raw := h.Properties.Headers
			out = append(out, append(binary.BigEndian.AppendUint32(nil, uint32(len(raw))), raw...))
		}
	}
	return out
}

// seeds adds each distinct input once.
type seeds struct {
	f    *testing.F
	seen map[string]bool
}

func newSeeds(f *testing.F) *seeds { return &seeds{f: f, seen: map[string]bool{}} }

// add adds b unless an identical input was added before.
func (s *seeds) add(b []byte) {
	if s.seen[string(b)] {
		return
	}
	s.seen[string(b)] = true
	s.f.Add(b)
}
