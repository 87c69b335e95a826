//go:build !race

package driver

import "testing"

// TestAllocBufPool: taking a buffer from the pool and giving it back does
// not allocate once the pool holds one (the race detector drops pooled
// items at random, hence the build tag).
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
