package warren

import (
	"sync"
	"sync/atomic"

	"github.com/warren-amqp/warren/proto"
)

// Topology is what the application declared through a Connection:
// exchanges, queues, bindings and consumers, in declaration order. It is
// the record a reconnecting client needs to declare everything again.
// Server-named queues appear under the name the broker gave them.
type Topology struct {
	Exchanges []DeclaredExchange
	Queues    []DeclaredQueue
	Bindings  []DeclaredBinding
	Consumers []DeclaredConsumer
}

// DeclaredExchange is an exchange.declare that succeeded.
type DeclaredExchange struct {
	Name, Kind string
	Options    ExchangeOptions
}

// DeclaredQueue is a queue.declare that succeeded.
type DeclaredQueue struct {
	Name string
	// ServerNamed: declared with an empty name, the broker chose Name. A
	// recovery declares it again with an empty name and the new name
	// replaces the old one everywhere (bindings, consumers).
	ServerNamed bool
	Options     QueueOptions
}

// DeclaredBinding is a queue or exchange binding that succeeded.
type DeclaredBinding struct {
	// ExchangeToExchange says Destination is an exchange, not a queue.
	ExchangeToExchange bool
	Destination        string
	Source             string
	RoutingKey         string
	Arguments          proto.Table
}

// DeclaredConsumer is a running consumer.
type DeclaredConsumer struct {
	Queue   string
	Tag     string
	Options ConsumeOptions
}

// topology records declarations; it has its own lock so that recording
// never waits for the connection's.
type topology struct {
	mu sync.Mutex
	t  Topology
}

func (tp *topology) snapshot() Topology {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return Topology{
		Exchanges: append([]DeclaredExchange(nil), tp.t.Exchanges...),
		Queues:    append([]DeclaredQueue(nil), tp.t.Queues...),
		Bindings:  append([]DeclaredBinding(nil), tp.t.Bindings...),
		Consumers: append([]DeclaredConsumer(nil), tp.t.Consumers...),
	}
}

func (tp *topology) addExchange(e DeclaredExchange) {
	if e.Options.Passive {
		return
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.t.Exchanges = upsert(tp.t.Exchanges, e, func(o DeclaredExchange) bool { return o.Name == e.Name })
}

func (tp *topology) deleteExchange(name string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.deleteExchangeLocked(name)
}

func (tp *topology) deleteExchangeLocked(name string) {
	tp.t.Exchanges = deleteWhere(tp.t.Exchanges, func(e DeclaredExchange) bool { return e.Name == name })
	tp.t.Bindings = deleteWhere(tp.t.Bindings, func(b DeclaredBinding) bool {
		return b.Source == name || (b.ExchangeToExchange && b.Destination == name)
	})
}

func (tp *topology) addQueue(q DeclaredQueue) {
	if q.Options.Passive {
		return
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.t.Queues = upsert(tp.t.Queues, q, func(o DeclaredQueue) bool { return o.Name == q.Name })
}

func (tp *topology) deleteQueue(name string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.deleteQueueLocked(name)
}

func (tp *topology) deleteQueueLocked(name string) {
	tp.t.Queues = deleteWhere(tp.t.Queues, func(q DeclaredQueue) bool { return q.Name == name })
	tp.t.Bindings = deleteWhere(tp.t.Bindings, func(b DeclaredBinding) bool { return !b.ExchangeToExchange && b.Destination == name })
	tp.t.Consumers = deleteWhere(tp.t.Consumers, func(c DeclaredConsumer) bool { return c.Queue == name })
}

func (tp *topology) addBinding(b DeclaredBinding) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.t.Bindings = append(deleteWhere(tp.t.Bindings, b.same), b)
}

// deleteBinding forgets an unbound binding, and its source exchange if
// that is auto-delete and this was its last binding (the broker deletes
// it).
func (tp *topology) deleteBinding(b DeclaredBinding) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.t.Bindings = deleteWhere(tp.t.Bindings, b.same)
	for _, e := range tp.t.Exchanges {
		if e.Name == b.Source && e.Options.AutoDelete && !tp.isSourceLocked(b.Source) {
			tp.deleteExchangeLocked(b.Source)
			return
		}
	}
}

func (tp *topology) isSourceLocked(exchange string) bool {
	for _, b := range tp.t.Bindings {
		if b.Source == exchange {
			return true
		}
	}
	return false
}

func (b DeclaredBinding) same(o DeclaredBinding) bool {
	return b.ExchangeToExchange == o.ExchangeToExchange && b.Destination == o.Destination && b.Source == o.Source && b.RoutingKey == o.RoutingKey
}

func (tp *topology) addConsumer(c DeclaredConsumer) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.t.Consumers = append(tp.t.Consumers, c)
}

// deleteConsumer forgets a consumer the application cancelled (or whose
// channel it closed, or an error closed), and its queue if that is
// auto-delete and this was its last consumer (the broker deletes it).
func (tp *topology) deleteConsumer(tag string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	queue := ""
	for _, c := range tp.t.Consumers {
		if c.Tag == tag {
			queue = c.Queue
		}
	}
	tp.t.Consumers = deleteWhere(tp.t.Consumers, func(c DeclaredConsumer) bool { return c.Tag == tag })
	if queue == "" {
		return
	}
	for _, c := range tp.t.Consumers {
		if c.Queue == queue {
			return
		}
	}
	for _, q := range tp.t.Queues {
		if q.Name == queue && q.Options.AutoDelete {
			tp.deleteQueueLocked(queue)
			return
		}
	}
}

// rename replaces a server-named queue's old name with its new one.
func (tp *topology) rename(old, new string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for i := range tp.t.Queues {
		if tp.t.Queues[i].Name == old {
			tp.t.Queues[i].Name = new
		}
	}
	for i := range tp.t.Bindings {
		if b := &tp.t.Bindings[i]; !b.ExchangeToExchange && b.Destination == old {
			b.Destination = new
		}
	}
	for i := range tp.t.Consumers {
		if tp.t.Consumers[i].Queue == old {
			tp.t.Consumers[i].Queue = new
		}
	}
}

// upsert replaces the first element same matches with v, or appends v.
func upsert[T any](s []T, v T, same func(T) bool) []T {
	for i := range s {
		if same(s[i]) {
			s[i] = v
			return s
		}
	}
	return append(s, v)
}

func deleteWhere[T any](s []T, match func(T) bool) []T {
	out := s[:0]
	for _, x := range s {
		if !match(x) {
			out = append(out, x)
		}
	}
	clear(s[len(out):])
	return out
}

// Topology returns a snapshot of what was declared through this connection
// and still stands, as far as the client knows.
func (c *Connection) Topology() Topology { return c.topo.snapshot() }

// lazyTopology is a Connection's record of what was declared, made on
// the first declaration: a connection that declares nothing (an idle
// one, whose footprint counts) carries a pointer, not the record.
type lazyTopology struct{ p atomic.Pointer[topology] }

// get returns the record, making it if need be.
func (l *lazyTopology) get() *topology {
	if tp := l.p.Load(); tp != nil {
		return tp
	}
	l.p.CompareAndSwap(nil, new(topology))
	return l.p.Load()
}

func (l *lazyTopology) snapshot() Topology {
	if tp := l.p.Load(); tp != nil {
		return tp.snapshot()
	}
	return Topology{}
}

func (l *lazyTopology) addExchange(e DeclaredExchange) { l.get().addExchange(e) }
func (l *lazyTopology) addQueue(q DeclaredQueue)       { l.get().addQueue(q) }
func (l *lazyTopology) addBinding(b DeclaredBinding)   { l.get().addBinding(b) }
func (l *lazyTopology) addConsumer(c DeclaredConsumer) { l.get().addConsumer(c) }

func (l *lazyTopology) deleteExchange(name string) {
	if tp := l.p.Load(); tp != nil {
		tp.deleteExchange(name)
	}
}

func (l *lazyTopology) deleteQueue(name string) {
	if tp := l.p.Load(); tp != nil {
		tp.deleteQueue(name)
	}
}

func (l *lazyTopology) deleteBinding(b DeclaredBinding) {
	if tp := l.p.Load(); tp != nil {
		tp.deleteBinding(b)
	}
}

func (l *lazyTopology) deleteConsumer(tag string) {
	if tp := l.p.Load(); tp != nil {
		tp.deleteConsumer(tag)
	}
}

func (l *lazyTopology) rename(old, new string) {
	if tp := l.p.Load(); tp != nil {
		tp.rename(old, new)
	}
}
