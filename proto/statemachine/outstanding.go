package statemachine

// Outstanding tracks publishes awaiting a broker confirm, keyed by their
// confirm sequence number (1, 2, 3, … in publish order), each with a value
// of the caller's choice. Resolving a confirm, single or multiple, costs
// O(1) amortised per publish however many are outstanding: entries live in
// a ring in sequence order and are popped from the front.
//
// The zero value is empty and expects sequence 1 next. Not safe for
// concurrent use.
type Outstanding[T any] struct {
	ring  []outstandingSlot[T]
	head  int    // index of the oldest slot
	n     int    // slots in use, resolved or not, from head
	first uint64 // sequence number of ring[head]
	live  int    // unresolved slots
}

type outstandingSlot[T any] struct {
	v    T
	done bool
}

// Len returns how many publishes are still unresolved.
func (o *Outstanding[T]) Len() int { return o.live }

// Next returns the sequence number the next Push must use.
func (o *Outstanding[T]) Next() uint64 {
	if o.first == 0 {
		return 1
	}
	return o.first + uint64(o.n)
}

// Push records publish seq, which must equal Next(); it reports false (and
// records nothing) otherwise.
func (o *Outstanding[T]) Push(seq uint64, v T) bool {
	if seq != o.Next() {
		return false
	}
	if o.first == 0 {
		o.first = 1
	}
	if o.n == len(o.ring) {
		o.grow()
	}
	o.ring[(o.head+o.n)%len(o.ring)] = outstandingSlot[T]{v: v}
	o.n++
	o.live++
	return true
}

func (o *Outstanding[T]) grow() {
	size := max(16, 2*len(o.ring))
	ring := make([]outstandingSlot[T], size)
	for i := 0; i < o.n; i++ {
		ring[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = ring, 0
}

// Resolve settles publish tag, or with multiple every unresolved publish
// up to and including tag, calling fn (if not nil) for each in sequence
// order. It returns how many it settled; a tag never pushed, or already
// settled, settles nothing.
func (o *Outstanding[T]) Resolve(tag uint64, multiple bool, fn func(seq uint64, v T)) int {
	if o.n == 0 || tag < o.first {
		return 0
	}
	settled := 0
	if multiple {
		for o.n > 0 && o.first <= tag {
			s := &o.ring[o.head]
			if !s.done {
				if fn != nil {
					fn(o.first, s.v)
				}
				settled++
				o.live--
			}
			o.popFront()
		}
		return settled
	}
	idx := tag - o.first
	if idx >= uint64(o.n) {
		return 0
	}
	s := &o.ring[(o.head+int(idx))%len(o.ring)]
	if s.done {
		return 0
	}
	if fn != nil {
		fn(tag, s.v)
	}
	s.done = true
	var zero T
	s.v = zero
	o.live--
	for o.n > 0 && o.ring[o.head].done {
		o.popFront()
	}
	return 1
}

func (o *Outstanding[T]) popFront() {
	o.ring[o.head] = outstandingSlot[T]{}
	o.head = (o.head + 1) % len(o.ring)
	o.n--
	o.first++
}

// Drain settles every unresolved publish, calling fn for each in sequence
// order, and returns how many there were. Sequence numbering continues.
func (o *Outstanding[T]) Drain(fn func(seq uint64, v T)) int {
	if o.n == 0 {
		return 0
	}
	return o.Resolve(o.first+uint64(o.n)-1, true, fn)
}

// Peek calls fn with the value of publish seq if it is still unresolved.
func (o *Outstanding[T]) Peek(seq uint64, fn func(v T)) bool {
	if o.n == 0 || seq < o.first || seq-o.first >= uint64(o.n) {
		return false
	}
	s := &o.ring[(o.head+int(seq-o.first))%len(o.ring)]
	if s.done {
		return false
	}
	fn(s.v)
	return true
}
