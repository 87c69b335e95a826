// Package bench holds Warren's codec and state-machine benchmarks and
// allocation tests; it has no code of its own besides this documentation.
// (The side-by-side comparison with amqp091-go is the separate module in
// compare/, so that amqp091-go stays out of Warren's go.mod.)
//
// What is measured (bench_test.go), each reporting ns/op, MB/s of wire
// bytes and allocs/op:
//
//   - BenchmarkParseDeliver: parsing one delivered message — basic.deliver,
//     a content header (content-type application/json, delivery-mode 2, a
//     headers table of two entries) and a 64-byte body — out of a buffer
//     that holds many such messages, as a connection's read loop does:
//     frames.ReadFrame three times, Parser.ParseMethod on a warmed Parser
//     and ContentHeader.Parse. The target is zero allocations.
//   - BenchmarkParseDeliver4K: the same with a 4096-byte body.
//   - BenchmarkAppendPublish: frames.AppendMessage of basic.publish with the
//     same properties and a 64-byte body into a reused buffer, as a
//     publisher does. The target is zero allocations.
//   - BenchmarkTableDecode: proto.ReadTable of a realistic headers table of
//     eight fields of mixed kinds, a nested table and an array included.
//     Decoded tables own their memory, so this one allocates.
//
// machine_test.go measures proto/statemachine driven without sockets from
// pre-encoded server bytes: BenchmarkMachineDeliver (and
// BenchmarkMachineDeliverAck) feed deliveries in 64 KiB chunks and pull the
// events; BenchmarkMachinePublish (and BenchmarkMachinePublishRef, with a
// pointer ref per publish) publishes in confirm mode and feeds multiple
// acks; BenchmarkMachinePublishManyOutstanding confirms 200,000
// outstanding publishes with one ack, showing O(1) amortised bookkeeping.
// The deliver and publish benchmarks target zero allocations
// (machine_alloc_test.go asserts it, also for deliveries read into pooled
// buffers handed over with Conn.Adopt); ManyOutstanding allocates once per
// batch, the EventConfirm.Publishes list of 200,000 entries, which the
// machine does not keep.
//
// alloc_test.go turns the two zero-allocation targets into tests
// (TestAllocParseDeliver, TestAllocAppendPublish) that CI runs without the
// race detector: `go test -run Alloc ./...`. They are left out of -race
// builds, where the detector's bookkeeping allocates.
//
// To run the benchmarks, from the repository root:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./bench/
//
// README.md beside this file records figures from one machine.
package bench
