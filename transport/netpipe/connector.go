package netpipe

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Connector dials in-memory pipes: each [Connector.Dial] makes a fresh pair,
// runs Serve on the server end in a new goroutine, and returns the client
// end. It has the Dial(ctx) shape of Warren's TCP and TLS dialers, so code
// that dials (and redials after a lost connection) can be tested against a
// scripted server.
//
// Set the fields before the first Dial and do not change them afterwards.
// Dial is safe for concurrent use. Under testing/synctest, create the
// Connector inside the bubble that uses it.
type Connector struct {
	// Options configures every pipe.
	Options Options

	// Serve plays the server for one connection. n counts dials from 1, so
	// a script can act differently on a reconnect. The server end is closed
	// when Serve returns. Required.
	Serve func(n int, server *Conn)

	// Fail, if set, is called first on every dial; a non-nil result fails
	// that dial with the error (wrapped) and Serve is not called, like a
	// refused connection. n counts dials from 1, failed ones included.
	Fail func(n int) error

	mu    sync.Mutex
	dials int
	wg    sync.WaitGroup
}

// Dial makes a pipe, starts Serve on its server end and returns its client
// end. It fails without dialing if ctx is already done.
func (c *Connector) Dial(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: Network, Err: err}
	}
	if c.Serve == nil {
		return nil, errors.New("netpipe: Connector.Serve is nil")
	}
	c.mu.Lock()
	c.dials++
	n := c.dials
	c.mu.Unlock()
	if c.Fail != nil {
		if err := c.Fail(n); err != nil {
			return nil, &net.OpError{Op: "dial", Net: Network, Err: err}
		}
	}
	client, server := PipeWith(c.Options)
	c.wg.Go(func() {
		defer server.Close()
		c.Serve(n, server)
	})
	return client, nil
}

// Dials returns how many times Dial has been called past its context check.
func (c *Connector) Dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// Wait blocks until every Serve call started so far has returned. Call it at
// the end of a test, after closing the client ends, so that no server
// goroutine outlives the test.
func (c *Connector) Wait() {
	c.wg.Wait()
}
