//go:build !race

// The race detector allocates on its own account, so these tests only run
// without it (CI: `go test -run Alloc ./...`).

package bench

import "testing"

// TestAllocParseDeliver requires parsing a delivered message (three
// frames, the method on a warmed Parser, the content header) not to
// allocate, for a small and a 4 KiB body.
func TestAllocParseDeliver(t *testing.T) {
	for _, size := range []int{64, 4096} {
		mp, _ := newMessageParser(t, size)
		var err error
		allocs := testing.AllocsPerRun(2*messagesPerBuffer, func() {
			if e := mp.next(); e != nil && err == nil {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Errorf("%d-byte body: %v allocations per parsed message, want 0", size, allocs)
		}
	}
}

// TestAllocAppendPublish requires encoding a publish with properties,
// headers and body into a reused buffer not to allocate.
func TestAllocAppendPublish(t *testing.T) {
	pb, _ := newPublisher(t)
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		if e := pb.publish(); e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per publish, want 0", allocs)
	}
}
