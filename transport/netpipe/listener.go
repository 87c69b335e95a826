package netpipe

import (
	"context"
	"net"
	"sync"
)

// Listener is an in-memory [net.Listener]: [Listener.Dial] makes a pipe and
// hands its server end to [Listener.Accept]. It suits servers written
// against net.Listener; for a scripted server per dial, [Connector] is
// shorter. All methods are safe for concurrent use. Under testing/synctest,
// create the Listener inside the bubble that uses it.
type Listener struct {
	opts  Options
	conns chan *Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*Listener)(nil)

// NewListener returns a listener whose pipes are configured by o. Its
// address is o.ServerAddr (default "server").
func NewListener(o Options) *Listener {
	if o.ServerAddr == "" {
		o.ServerAddr = "server"
	}
	return &Listener{opts: o, conns: make(chan *Conn), done: make(chan struct{})}
}

// Accept waits for a Dial and returns the server end of its pipe. After
// Close it fails with [net.ErrClosed].
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: Network, Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Dial makes a pipe and waits until Accept takes its server end, ctx is
// done, or l is closed; on success it returns the client end. Like a TCP
// dial, it does not wait for the server to read anything.
func (l *Listener) Dial(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "dial", Net: Network, Addr: l.Addr(), Err: err}
	}
	client, server := PipeWith(l.opts)
	select {
	case l.conns <- server:
		return client, nil
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: Network, Addr: l.Addr(), Err: ctx.Err()}
	case <-l.done:
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: Network, Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close stops the listener: pending and later Accept and Dial calls fail.
// Connections already accepted stay open. Closing twice is a no-op.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's address, the server ends' LocalAddr.
func (l *Listener) Addr() net.Addr { return Addr(l.opts.ServerAddr) }
