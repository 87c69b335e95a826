package main

import "fmt"

const purgeAbout = `
Removes every ready message from the queue and prints how many it removed
(messages delivered but not yet acknowledged stay).`

func runPurge(e *env, args []string) error {
	f := newFlags(e, "warren purge --queue Q", purgeAbout)
	queue := f.String("queue", "", "queue to purge (required)")
	if err := f.parseFlagsOnly(args, "queue"); err != nil {
		return err
	}
	conn, ch, err := f.dialChannel()
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	ctx, done := e.rpc("queue.purge")
	n, err := ch.QueuePurge(ctx, *queue)
	if err = done(err); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, n)
	return nil
}
