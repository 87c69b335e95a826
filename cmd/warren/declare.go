package main

import (
	"fmt"

	"github.com/warren-amqp/warren"
)

const declareAbout = `
  warren declare queue [NAME] [--durable] [--exclusive] [--auto-delete] [--passive] [--arg k=v]…
  warren declare exchange NAME [--type T] [--durable] [--auto-delete] [--internal] [--passive] [--arg k=v]…

Declares a queue or an exchange and prints its name on stdout: for a queue
declared with the name "" (or none), the name the broker chose. An
--exclusive queue belongs to warren's connection and disappears when warren
exits.

--arg values: integers become signed 64-bit ('l'), true/false booleans, anything
else strings, e.g. --arg x-max-length=1000 --arg x-queue-type=quorum.
--args-json takes a JSON object with the header mapping (see the README).`

func runDeclare(e *env, args []string) error {
	f := newFlags(e, "warren declare queue|exchange NAME [flags]", declareAbout)
	durable := f.Bool("durable", false, "survive a broker restart")
	autoDelete := f.Bool("auto-delete", false, "delete when the last consumer (queue) or binding (exchange) goes")
	passive := f.Bool("passive", false, "only check that it exists")
	exclusive := f.Bool("exclusive", false, "queue only: used by this connection only, deleted when it closes")
	kind := f.String("type", "direct", "exchange only: `type` (direct, fanout, topic, headers, …)")
	internal := f.Bool("internal", false, "exchange only: clients cannot publish to it directly")
	argsTable := f.argsFlags("declare")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErrorf("missing queue or exchange (see 'warren declare --help')")
	}
	what, name := pos[0], ""
	if len(pos) > 1 {
		name = pos[1]
	}
	if len(pos) > 2 {
		return usageErrorf("unexpected argument %q", pos[2])
	}
	arguments, err := argsTable()
	if err != nil {
		return err
	}
	switch what {
	case "queue":
		if f.wasSet("type") || f.wasSet("internal") {
			return usageErrorf("--type and --internal apply to exchanges only")
		}
		conn, ch, err := f.dialChannel()
		if err != nil {
			return err
		}
		defer e.closeConn(conn)
		ctx, done := e.rpc("queue.declare")
		q, err := ch.QueueDeclare(ctx, name, warren.QueueOptions{Passive: *passive, Durable: *durable, Exclusive: *exclusive,
			AutoDelete: *autoDelete, Arguments: arguments})
		if err = done(err); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, q.Name)
	case "exchange":
		if f.wasSet("exclusive") {
			return usageErrorf("--exclusive applies to queues only")
		}
		if name == "" {
			return usageErrorf("missing exchange NAME (the default exchange \"\" cannot be declared)")
		}
		conn, ch, err := f.dialChannel()
		if err != nil {
			return err
		}
		defer e.closeConn(conn)
		ctx, done := e.rpc("exchange.declare")
		if err := done(ch.ExchangeDeclare(ctx, name, *kind, warren.ExchangeOptions{Passive: *passive, Durable: *durable,
			AutoDelete: *autoDelete, Internal: *internal, Arguments: arguments})); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, name)
	default:
		return usageErrorf("declare what? want queue or exchange, not %q", what)
	}
	return nil
}
