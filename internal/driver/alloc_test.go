//go:build !race

// The race detector allocates on its own account, so these tests only run
// without it (CI: go test -run Alloc ./...).

package driver

import (
	"testing"
	"testing/synctest"

	"github.com/warren-amqp/warren/proto/frames"
)

// TestAllocBufPool: taking a buffer from the pool and giving it back does
// not allocate once the pool holds one.
func TestAllocBufPool(t *testing.T) {
	var p bufPool
	p.put(p.get())
	allocs := testing.AllocsPerRun(100, func() {
		b := p.get()
		b[0] = 1
		p.put(b)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per get/put", allocs)
	}
}

// TestAllocDriverDeliver: reading a stream of deliveries, handing each
// event to the Handler and running Perform does not allocate in the
// driver (the peer writes a pre-encoded stream, and the test handler
// only counts).
func TestAllocDriverDeliver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const perRun = 500
		var stream []byte
		for i := uint64(1); i <= perRun; i++ {
			stream, _ = frames.AppendMessage(stream, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: i, RoutingKey: "q"}, nil, make([]byte, 64), 131072)
		}
		send := make(chan struct{})
		h := newHarness(t, harnessOptions{plain: true}, func(p *peer) {
			if p.answerOpen(false) != nil {
				return
			}
			for p.wait(send) {
				_, _ = p.nc.Write(stream)
			}
		})
		seen := make(chan struct{})
		n := 0
		h.h.onDelivery = func(uint64) {
			if n++; n == perRun {
				n = 0
				seen <- struct{}{}
			}
		}
		run := func() {
			send <- struct{}{}
			<-seen
		}
		run() // warm up: buffers, the handler's queue
		allocs := testing.AllocsPerRun(20, run)
		if allocs != 0 {
			t.Fatalf("%v allocations per %d deliveries", allocs, perRun)
		}
	})
}
