package main

import (
	"fmt"

	"github.com/warren-amqp/warren"
)

const bindAbout = `
  warren %[1]s --queue Q --exchange X [--routing-key K] [--arg k=v]…
  warren %[1]s --destination-exchange D --exchange X [--routing-key K] [--arg k=v]…

The first form %[2]s queue Q and exchange X; the second, exchange D (the
destination) and exchange X (the source: messages X routes with K flow on to D;
a RabbitMQ extension). --arg and --args-json give the binding arguments (e.g.
for headers exchanges: --arg x-match=all).`

func runBind(e *env, args []string) error   { return bindCmd(e, args, true) }
func runUnbind(e *env, args []string) error { return bindCmd(e, args, false) }

func bindCmd(e *env, args []string, bind bool) error {
	verb := "binds"
	if !bind {
		verb = "unbinds"
	}
	f := newFlags(e, "warren "+e.name+" (--queue Q | --destination-exchange D) --exchange X [--routing-key K]",
		fmt.Sprintf(bindAbout, e.name, verb))
	queue := f.String("queue", "", "queue to "+e.name)
	dest := f.String("destination-exchange", "", "destination exchange (exchange-to-exchange binding)")
	exchange := f.String("exchange", "", "source exchange (required)")
	key := f.String("routing-key", "", "routing key (binding key)")
	argsTable := f.argsFlags("binding")
	if err := f.parseFlagsOnly(args); err != nil {
		return err
	}
	if !f.wasSet("exchange") {
		return usageErrorf("--exchange is required")
	}
	if f.wasSet("queue") == f.wasSet("destination-exchange") {
		return usageErrorf("give exactly one of --queue and --destination-exchange")
	}
	arguments, err := argsTable()
	if err != nil {
		return err
	}
	conn, ch, err := f.dialChannel()
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	switch {
	case f.wasSet("queue") && bind:
		ctx, done := e.rpc("queue.bind")
		err = done(ch.QueueBind(ctx, *queue, *key, *exchange, warren.BindOptions{Arguments: arguments}))
	case f.wasSet("queue"):
		ctx, done := e.rpc("queue.unbind")
		err = done(ch.QueueUnbind(ctx, *queue, *key, *exchange, warren.UnbindOptions{Arguments: arguments}))
	case bind:
		ctx, done := e.rpc("exchange.bind")
		err = done(ch.ExchangeBind(ctx, *dest, *key, *exchange, warren.BindOptions{Arguments: arguments}))
	default:
		ctx, done := e.rpc("exchange.unbind")
		err = done(ch.ExchangeUnbind(ctx, *dest, *key, *exchange, warren.BindOptions{Arguments: arguments}))
	}
	if err != nil {
		return err
	}
	what := fmt.Sprintf("queue %q", *queue)
	if !f.wasSet("queue") {
		what = fmt.Sprintf("exchange %q", *dest)
	}
	if bind {
		fmt.Fprintf(e.stdout, "bound %s to exchange %q with routing key %q\n", what, *exchange, *key)
	} else {
		fmt.Fprintf(e.stdout, "unbound %s from exchange %q with routing key %q\n", what, *exchange, *key)
	}
	return nil
}
