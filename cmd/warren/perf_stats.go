package main

import (
	"math/bits"
	"sync"
)

// histogram is a log-linear histogram of non-negative integers (latencies
// in microseconds): exact below 128, then 64 buckets per power of two
// (under 1.6 % error). The maximum is exact.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	max    uint64
}

const (
	histSub     = 64
	histBuckets = 2*histSub + 57*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	return 2*histSub + (shift-1)*histSub + int(v>>shift) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	j := i - 2*histSub
	shift := j/histSub + 1
	m := uint64(j%histSub + histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

func (h *histogram) record(v uint64) {
	h.counts[histIndex(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) add(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

func (h *histogram) reset() { *h = histogram{} }

// quantile returns the value at quantile q (0 < q <= 1); 0 when empty.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return min(histValue(i), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// bitset is a growable set of sequence numbers.
type bitset []uint64

// set adds i and reports whether it was already there.
func (b *bitset) set(i uint64) bool {
	w := int(i / 64)
	if w >= len(*b) {
		n := max(w+1, 2*len(*b))
		grown := make(bitset, n)
		copy(grown, *b)
		*b = grown
	}
	m := uint64(1) << (i % 64)
	was := (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i uint64) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(uint64(1)<<(i%64)) != 0
}

// received tracks, for one producer, which sequence numbers consumers got.
type received struct {
	mu          sync.Mutex
	seen        bitset
	duplicates  uint64 // a second delivery not flagged redelivered: an error
	redelivered uint64 // a second delivery flagged redelivered
}

// mark records a delivery of seq and reports whether it was the first.
func (r *received) mark(seq uint64, redelivered bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.seen.set(seq) {
		return true
	}
	if redelivered {
		r.redelivered++
	} else {
		r.duplicates++
	}
	return false
}
