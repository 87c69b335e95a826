package main

import (
	"fmt"

	"github.com/warren-amqp/warren"
)

const deleteAbout = `
  warren delete queue NAME [--if-unused] [--if-empty]
  warren delete exchange NAME [--if-unused]

Deletes a queue (printing how many messages it held) or an exchange. Deleting
a queue or exchange that does not exist succeeds (RabbitMQ's behaviour).`

func runDelete(e *env, args []string) error {
	f := newFlags(e, "warren delete queue|exchange NAME [flags]", deleteAbout)
	ifUnused := f.Bool("if-unused", false, "only if it has no consumers (queue) or bindings (exchange)")
	ifEmpty := f.Bool("if-empty", false, "queue only: only if it holds no messages")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErrorf("want queue|exchange NAME (see 'warren delete --help')")
	}
	what, name := pos[0], pos[1]
	if what != "queue" && what != "exchange" {
		return usageErrorf("delete what? want queue or exchange, not %q", what)
	}
	if what == "exchange" && f.wasSet("if-empty") {
		return usageErrorf("--if-empty applies to queues only")
	}
	conn, ch, err := f.dialChannel()
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	if what == "queue" {
		ctx, done := e.rpc("queue.delete")
		n, err := ch.QueueDelete(ctx, name, warren.QueueDeleteOptions{IfUnused: *ifUnused, IfEmpty: *ifEmpty})
		if err = done(err); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted queue %q (%d message(s))\n", name, n)
		return nil
	}
	ctx, done := e.rpc("exchange.delete")
	if err := done(ch.ExchangeDelete(ctx, name, warren.ExchangeDeleteOptions{IfUnused: *ifUnused})); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted exchange %q\n", name)
	return nil
}
