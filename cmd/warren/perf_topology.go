package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// perfQueue is one of perf's queues.
type perfQueue struct {
	name      string
	keys      []string    // its binding keys to the exchange (none for the default exchange)
	recv      []*received // per producer: what its consumers got
	consumers int
	producers int // publishing to it through the default exchange

	deliveries atomic.Uint64
}

// perfTarget is where a message goes: an exchange and a routing key, and
// the queues (indices) that routing key reaches.
type perfTarget struct {
	exchange, key string
	routes        []bool // by queue index
}

// perfBinding is a queue binding perf made.
type perfBinding struct {
	queue int
	key   string
}

// perfExchangeTypes are the types perf knows how to route.
var perfExchangeTypes = []string{"direct", "topic", "fanout"}

// builtinExchangeType is the type of RabbitMQ's predeclared exchanges, ""
// for a name that is not one of them.
func builtinExchangeType(name string) string {
	switch name {
	case "amq.direct":
		return "direct"
	case "amq.topic":
		return "topic"
	case "amq.fanout":
		return "fanout"
	case "amq.headers", "amq.match":
		return "headers"
	}
	return ""
}

// checkPerfRouting validates --queues, --exchange, --exchange-type and
// --routing-key, and fills in the exchange type.
func checkPerfRouting(f *cmdFlags, o *perfOptions) error {
	switch {
	case o.queues < 1:
		return usageErrorf("--queues must be at least 1")
	case o.queues > 1000:
		return usageErrorf("--queues must be at most 1000")
	case o.consumers > 0 && o.consumers < o.queues:
		return usageErrorf("--consumers %d for --queues %d: every queue needs a consumer (give at least %d, or 0 to publish only)",
			o.consumers, o.queues, o.queues)
	}
	if o.exchange == "" {
		switch {
		case f.wasSet("exchange-type"):
			return usageErrorf("--exchange-type needs --exchange")
		case len(o.routingKeys) > 0:
			return usageErrorf("--routing-key needs --exchange (through the default exchange a producer publishes to its queue by name)")
		case o.producers < o.queues:
			return usageErrorf("--producers %d for --queues %d: through the default exchange each producer publishes to one queue, "+
				"so give at least %d producers, or publish through --exchange", o.producers, o.queues, o.queues)
		}
		return nil
	}
	if o.exchange == "amq.default" {
		return usageErrorf("--exchange amq.default is the default exchange: leave --exchange out")
	}
	known := false
	for _, t := range perfExchangeTypes {
		known = known || o.exchangeType == t
	}
	if !known {
		return usageErrorf("--exchange-type %q: want direct, topic or fanout", o.exchangeType)
	}
	switch builtin := builtinExchangeType(o.exchange); {
	case builtin == "headers":
		return usageErrorf("--exchange %s: perf routes with routing keys, not headers: use direct, topic or fanout", o.exchange)
	case builtin != "" && f.wasSet("exchange-type") && builtin != o.exchangeType:
		return usageErrorf("--exchange %s is a %s exchange, not %s", o.exchange, builtin, o.exchangeType)
	case builtin != "":
		o.exchangeType = builtin
	}
	return nil
}

// perfQueueName is the name of queue i of n, from prefix.
func perfQueueName(prefix string, i, n int) string {
	if n == 1 {
		return prefix
	}
	return fmt.Sprintf("%s-%d", prefix, i)
}

// routes reports which queues a message with routing key reaches.
func (r *perfRun) routes(key string) []bool {
	in := make([]bool, len(r.queues))
	for i, q := range r.queues {
		for _, bk := range q.keys {
			switch r.o.exchangeType {
			case "fanout":
				in[i] = true
			case "topic":
				in[i] = in[i] || topicMatch(strings.Split(bk, "."), strings.Split(key, "."))
			default:
				in[i] = in[i] || bk == key
			}
		}
	}
	return in
}

// topicMatch reports whether a topic exchange's binding pattern (words;
// "*" one word, "#" zero or more) matches a routing key's words.
func topicMatch(pattern, key []string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case "#":
			for skip := 0; skip <= len(key); skip++ {
				if topicMatch(pattern[1:], key[skip:]) {
					return true
				}
			}
			return false
		case "*":
			if len(key) == 0 {
				return false
			}
		default:
			if len(key) == 0 || key[0] != pattern[0] {
				return false
			}
		}
		pattern, key = pattern[1:], key[1:]
	}
	return len(key) == 0
}

// declareTopology declares (or checks) the exchange and the queues on the
// control channel, binds the queues, and works out where each routing key
// goes. What it declares is recorded for cleanup, also when it fails
// midway.
func (r *perfRun) declareTopology(ch *warren.Channel) error {
	e, o := r.e, r.o
	temporary := o.queue == ""
	prefix := o.queue
	if temporary {
		prefix = fmt.Sprintf("warren-perf-%08x", r.runID)
		var args proto.Table
		if o.consumers > 0 { // a safety net should warren die: unused queues expire
			args = proto.Table{{Name: "x-expires", Value: proto.Int32(int32(time.Minute / time.Millisecond))}}
		}
		r.queueOpts = &warren.QueueOptions{Arguments: args}
	}
	r.queuePrefix = prefix

	if o.exchange != "" {
		ctx, done := e.rpc("exchange.declare")
		err := done(ch.ExchangeDeclare(ctx, o.exchange, o.exchangeType, warren.ExchangeOptions{Passive: true}))
		if errors.Is(err, warren.NotFound) {
			// Ours: auto-delete, a safety net should warren die (it goes
			// with its last binding, when the temporary queues expire).
			r.exchangeOpts = &warren.ExchangeOptions{AutoDelete: true}
			ctx, done := e.rpc("exchange.declare")
			err = done(ch.ExchangeDeclare(ctx, o.exchange, o.exchangeType, *r.exchangeOpts))
			if err != nil {
				r.exchangeOpts = nil
			}
		}
		if err != nil {
			return fmt.Errorf("exchange %s: %w", o.exchange, err)
		}
	}

	for i := range o.queues {
		q := &perfQueue{name: perfQueueName(prefix, i, o.queues)}
		var err error
		if temporary {
			ctx, done := e.rpc("queue.declare")
			_, err = ch.QueueDeclare(ctx, q.name, *r.queueOpts)
			if err = done(err); err == nil {
				r.queues = append(r.queues, q)
				r.tempQueues = append(r.tempQueues, q.name)
			}
		} else {
			ctx, done := e.rpc("queue.declare")
			_, err = ch.QueueDeclare(ctx, q.name, warren.QueueOptions{Passive: true})
			if err = done(err); errors.Is(err, warren.NotFound) {
				ctx, done := e.rpc("queue.declare")
				_, err = ch.QueueDeclare(ctx, q.name, warren.QueueOptions{})
				err = done(err)
			}
			if err == nil {
				r.queues = append(r.queues, q)
			}
		}
		if err != nil {
			return fmt.Errorf("queue %s: %w", q.name, err)
		}
	}

	if o.exchange == "" {
		// Producer p publishes to queue p mod N by its name.
		return nil
	}
	keys := o.routingKeys
	if len(keys) == 0 {
		for _, q := range r.queues {
			keys = append(keys, q.name)
		}
	}
	// Queue i mod N gets key i mod K: every queue has a key, every key a
	// queue.
	for i := range max(len(r.queues), len(keys)) {
		b := perfBinding{queue: i % len(r.queues), key: keys[i%len(keys)]}
		q := r.queues[b.queue]
		ctx, done := e.rpc("queue.bind")
		if err := done(ch.QueueBind(ctx, q.name, b.key, o.exchange, warren.BindOptions{})); err != nil {
			return fmt.Errorf("binding queue %s to exchange %s: %w", q.name, o.exchange, err)
		}
		q.keys = append(q.keys, b.key)
		r.bindings = append(r.bindings, b)
	}
	for _, k := range keys {
		r.targets = append(r.targets, &perfTarget{exchange: o.exchange, key: k, routes: r.routes(k)})
	}
	return nil
}

// declareOnConsumer declares a consumer's queue, the exchange and the
// queue's bindings again on the consumer's own connection, when perf
// declared them: its recovery then declares them again before consuming,
// should a broker restart have dropped them.
func (r *perfRun) declareOnConsumer(ch *warren.Channel, qi int) error {
	e, o, q := r.e, r.o, r.queues[qi]
	if r.exchangeOpts != nil {
		if err := r.declareExchangeOn(ch); err != nil {
			return err
		}
	}
	if r.queueOpts != nil {
		ctx, done := e.rpc("queue.declare")
		if _, err := ch.QueueDeclare(ctx, q.name, *r.queueOpts); err != nil {
			return done(err)
		}
		done(nil)
	}
	if r.exchangeOpts == nil && r.queueOpts == nil {
		return nil
	}
	for _, k := range q.keys {
		ctx, done := e.rpc("queue.bind")
		if err := done(ch.QueueBind(ctx, q.name, k, o.exchange, warren.BindOptions{})); err != nil {
			return err
		}
	}
	return nil
}

// declareExchangeOn declares perf's exchange on ch (a producer's or a
// consumer's), for that connection's recovery.
func (r *perfRun) declareExchangeOn(ch *warren.Channel) error {
	ctx, done := r.e.rpc("exchange.declare")
	return done(ch.ExchangeDeclare(ctx, r.o.exchange, r.o.exchangeType, *r.exchangeOpts))
}

// cleanup removes what perf declared: its exchange, its temporary queues,
// and the bindings it made between an exchange and a queue that both stay
// (an existing exchange and a --queue queue). It runs once, bounded.
func (r *perfRun) cleanup(ch *warren.Channel) {
	if r.cleaned {
		return
	}
	r.cleaned = true
	e := r.e
	call := func(what string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), e.closeWait())
		defer cancel()
		if err := f(ctx); err != nil {
			r.fail("%s: %v", what, err)
		}
	}
	if r.exchangeOpts == nil && r.queueOpts == nil {
		for _, b := range r.bindings {
			q := r.queues[b.queue].name
			call(fmt.Sprintf("unbinding queue %s from exchange %s", q, r.o.exchange), func(ctx context.Context) error {
				return ch.QueueUnbind(ctx, q, b.key, r.o.exchange, warren.UnbindOptions{})
			})
		}
	}
	if r.exchangeOpts != nil {
		call("deleting exchange "+r.o.exchange, func(ctx context.Context) error {
			return ch.ExchangeDelete(ctx, r.o.exchange, warren.ExchangeDeleteOptions{})
		})
	}
	for _, name := range r.tempQueues {
		call("deleting queue "+name, func(ctx context.Context) error {
			_, err := ch.QueueDelete(ctx, name, warren.QueueDeleteOptions{})
			return err
		})
	}
}

// target is where producer p publishes message seq: through the default
// exchange to its queue, or through the exchange with the routing keys in
// turn (each producer starting at its own).
func (r *perfRun) target(p *perfProducer, seq uint64) *perfTarget {
	ts := p.targets
	return ts[(uint64(p.id)+seq)%uint64(len(ts))]
}

// copies is how many queues a message reaches.
func (t *perfTarget) copies() uint64 {
	n := uint64(0)
	for _, in := range t.routes {
		if in {
			n++
		}
	}
	return n
}
