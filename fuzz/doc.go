// Package fuzz holds Warren's native Go fuzz targets for the AMQP 0-9-1
// codec in proto and proto/frames and for the sans-IO core in
// proto/statemachine. It has no non-test code; the codec targets live in
// fuzz_test.go, the core's in machine_test.go:
//
//   - FuzzFrameReader feeds arbitrary bytes to a loop of frames.ReadFrame
//     (with frame_max 4096 and with no limit), decoding method frames with a
//     reused Parser and content headers with ContentHeader.Parse. Nothing
//     may panic, every error must be a *frames.Error with a reply code, no
//     frame may exceed frame_max, and feeding the input in two pieces (split
//     at an index derived from the input) through an accumulate-and-parse
//     loop must give the same frames and the same error as feeding it whole.
//   - FuzzTable decodes arbitrary bytes with proto.ReadTable and
//     proto.DecodeTableFields; whatever decodes must re-encode, decode to an
//     equal table and re-encode to the same bytes.
//   - FuzzProperties does the same for basic content properties
//     (PropertiesView.Parse, Properties, Append, ParseProperties).
//   - FuzzMethod decodes a class id, a method id and argument bytes with
//     frames.DecodeMethod; whatever decodes must round-trip through
//     AppendMethodArgs, and a reused Parser must agree with DecodeMethod.
//   - FuzzMethodRoundTrip lets github.com/google/gofuzz fill a method struct
//     (chosen by the first input byte) with random values, tables of every
//     field kind included, and checks encode → decode → equal.
//   - FuzzMachine completes a handshake, opens channels, publishes and
//     consumes, then feeds arbitrary server bytes, whole and in
//     input-derived splits (handed over with Adopt and ReadBuffer, the
//     buffers released, scribbled over and reused), then timeouts and EOF:
//     never a panic, the same events both ways, every error one the
//     machine documents, every request token answered once and every
//     publish settled once with its ref, bounded output, and exactly one
//     EventClosed at the end.
//
// The seed corpus is the project's own hand-made vectors (vectors_test.go,
// written byte by byte from the spec) and, in testdata/fuzz/<Target>/, a
// few committed entries made only from those vectors. The recorded
// RabbitMQ 3.10.8 traffic (testdata/rabbitmq-3.10.8 at the repository's
// root) adds its streams (client streams without their protocol header),
// runs of whole frames of at most 1 KiB cut from them, and the method
// payloads, tables and property lists inside them as seeds at run time.
//
// A plain `go test ./fuzz/` runs every seed once, as CI does. To fuzz one
// target, from the repository root:
//
//	go test -run '^$' -fuzz '^FuzzFrameReader$' -fuzztime 60s ./fuzz/
//
// (likewise FuzzTable, FuzzProperties, FuzzMethod, FuzzMethodRoundTrip).
// FuzzFrameReader's seeds include whole recorded sessions of up to 300 KB;
// when a mutation of one of those finds new coverage, the fuzzer spends up
// to a minute minimizing it and reports 0 execs/sec meanwhile. Adding
// -fuzzminimizetime 5s keeps those pauses short.
// A failing input is written to testdata/fuzz/<Target>/; keep it there as a
// regression seed once the bug is fixed.
package fuzz
