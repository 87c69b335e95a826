package warren

import (
	"log/slog"
	"sync"
)

// listener delivers notifications of one kind to one receiver (a channel
// the application registered, or a callback), in order, never dropping
// one and never making the connection wait: post hands a value over with
// a non-blocking send when the receiver is ready, and otherwise queues it
// for a goroutine that exists only while the queue is not empty.
//
// What bounds the queue: values of a kind with fold (blocked/unblocked)
// fold into one pending value; the others are bounded by the
// application's own doing (one confirm or return per publish, one close
// per channel incarnation). A queue that grows past farBehind is logged
// once.
type listener[T any] struct {
	ch   chan T           // the application's channel; nil for a callback
	fn   func(T)          // the callback; nil for a channel
	fold func(old, v T) T // folds a pending value into the next one (nil: keep both)
	log  *slog.Logger
	kind string

	mu      sync.Mutex
	queue   []T
	running bool // the forwarding goroutine runs
	closing bool // close the channel once the queue is delivered
	closed  bool
	warned  bool
}

// farBehind is the backlog at which a listener is logged as falling
// behind.
const farBehind = 10000

func newChanListener[T any](ch chan T, log *slog.Logger, kind string) *listener[T] {
	return &listener[T]{ch: ch, log: log, kind: kind}
}

func newFuncListener[T any](fn func(T), log *slog.Logger, kind string) *listener[T] {
	return &listener[T]{fn: fn, log: log, kind: kind}
}

// post delivers v after every value posted before it.
func (l *listener[T]) post(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing || l.closed {
		return
	}
	if !l.running && len(l.queue) == 0 && l.ch != nil {
		select {
		case l.ch <- v:
			return
		default:
		}
	}
	if n := len(l.queue); n > 0 && l.fold != nil {
		l.queue[n-1] = l.fold(l.queue[n-1], v)
	} else {
		l.queue = append(l.queue, v)
	}
	if len(l.queue) >= farBehind && !l.warned {
		l.warned = true
		l.log.Warn("amqp listener falls behind: notifications are queued until it receives them", "kind", l.kind, "queued", len(l.queue))
	}
	l.startLocked()
}

// close closes the listener's channel once every value posted is
// delivered; later posts are ignored.
func (l *listener[T]) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing || l.closed {
		return
	}
	l.closing = true
	if len(l.queue) == 0 && !l.running {
		l.finishLocked()
		return
	}
	l.startLocked()
}

func (l *listener[T]) startLocked() {
	if !l.running {
		l.running = true
		go l.forward()
	}
}

func (l *listener[T]) finishLocked() {
	l.closed = true
	if l.ch != nil {
		close(l.ch)
	}
}

// forward delivers the queue, waiting for the receiver, and ends once the
// queue is empty.
func (l *listener[T]) forward() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			if l.closing && !l.closed {
				l.finishLocked()
			}
			l.queue = nil
			l.mu.Unlock()
			return
		}
		v := l.queue[0]
		var zero T
		l.queue[0] = zero
		l.queue = l.queue[1:]
		l.mu.Unlock()
		if l.fn != nil {
			l.fn(v)
		} else {
			l.ch <- v
		}
	}
}

// connListeners are a Connection's listeners, made by the first
// registration: a connection nobody listens to does without (its idle
// footprint counts).
type connListeners struct {
	close []*listener[error]
	block []*listener[Blocking]
	rec   []*listener[RecoveryEvent]
}

// listenersLocked returns c's listeners, making them on the first call.
func (c *Connection) listenersLocked() *connListeners {
	if c.lis == nil {
		c.lis = &connListeners{}
	}
	return c.lis
}

// closers, blockers and recoverers return the listeners of each kind;
// none when ls is nil.
func (ls *connListeners) closers() []*listener[error] {
	if ls == nil {
		return nil
	}
	return ls.close
}

func (ls *connListeners) blockers() []*listener[Blocking] {
	if ls == nil {
		return nil
	}
	return ls.block
}

func (ls *connListeners) recoverers() []*listener[RecoveryEvent] {
	if ls == nil {
		return nil
	}
	return ls.rec
}
