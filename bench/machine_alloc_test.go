//go:build !race

// The race detector allocates on its own account, so these tests only run
// without it (CI: `go test -run Alloc ./...`).

package bench

import "testing"

// TestAllocMachineDeliver requires the state machine's delivery path —
// Feed of a read-sized chunk of deliveries, NextEvent until EventNone,
// AppendOutbound — not to allocate once warmed, for a no-ack consumer and
// for a manual-ack one that acks every 64 deliveries through Conn.Call.
func TestAllocMachineDeliver(t *testing.T) {
	for _, noAck := range []bool{true, false} {
		r := newDeliverRig(t, noAck)
		requireNoDeliverAllocs(t, noAck, "per 64 KiB read", r.readOnce)
	}
}

// TestAllocMachineDeliverAdopt is TestAllocMachineDeliver for a driver
// that pools its read buffers: each read of whole messages is handed over
// with Adopt and its buffer taken back with ReleaseInput.
func TestAllocMachineDeliverAdopt(t *testing.T) {
	for _, noAck := range []bool{true, false} {
		r := newDeliverRig(t, noAck)
		if err := r.alignInput(); err != nil {
			t.Fatal(err)
		}
		requireNoDeliverAllocs(t, noAck, "per adopted read", r.readAdopt)
	}
}

// requireNoDeliverAllocs runs read, which feeds one read's worth of
// deliveries (about 265) and reports how many it delivered, 50 times once
// warmed, and fails unless it delivered and allocated nothing.
func requireNoDeliverAllocs(t *testing.T, noAck bool, what string, read func() (int, error)) {
	t.Helper()
	var err error
	delivered := 0
	allocs := testing.AllocsPerRun(50, func() {
		n, e := read()
		delivered += n
		if e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if delivered < 50*200 {
		t.Fatalf("only %d deliveries in 50 reads", delivered)
	}
	if allocs != 0 {
		t.Errorf("noAck %v: %v allocations %s (%d deliveries), want 0", noAck, allocs, what, delivered/51)
	}
}

// TestAllocMachinePublish requires Publish in confirm mode, AppendOutbound
// into a reused buffer, and (every 64 publishes) Feed of a basic.ack
// multiple and its EventConfirm, not to allocate once warmed: with no ref,
// and with a pointer ref (a client's confirm handle) handed back in
// EventConfirm.Publishes.
func TestAllocMachinePublish(t *testing.T) {
	for _, ref := range []bool{false, true} {
		t.Run(map[bool]string{false: "ref nil", true: "pointer ref"}[ref], func(t *testing.T) {
			testAllocMachinePublish(t, ref)
		})
	}
}

func testAllocMachinePublish(t *testing.T, ref bool) {
	r := newPublishRig(t, ref)
	var err error
	allocs := testing.AllocsPerRun(20*machineAckEvery, func() {
		if e := r.publish(); e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.confirmed < 20*machineAckEvery {
		t.Fatalf("only %d publishes confirmed", r.confirmed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per publish, want 0", allocs)
	}
}
