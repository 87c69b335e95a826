// Package driver runs Warren's sans-IO protocol core (proto/statemachine)
// over a byte stream. It alone owns the net.Conn, the core, the goroutines
// that read and write, the clock, and the buffers. It knows nothing of
// the client's types: the client (package warren) holds channels,
// consumers and waiters, and talks to the driver through a handful of
// calls and one interface.
//
// # The interface
//
//   - Lock returns the core with the driver's lock held; the client runs
//     commands on it (Call, Publish, Ack, …) and keeps its own state beside
//     it under the same lock. Unlock(f) releases the lock and gets the
//     bytes queued meanwhile written: FlushLater leaves them to the writer
//     goroutine (coalescing streams), FlushNow is for a caller that waits
//     for the broker next, FlushBatch for a command made from a delivery
//     handler. Which goroutine writes is decided here, not by the caller.
//   - Await(ctx, done) is the one wait: every blocking call of the client
//     waits in it, for a channel the client's handler closes. Whether the
//     waiting goroutine reads the socket itself is decided inside it.
//   - Handler.Event receives every event of the core, under the lock, on
//     whichever goroutine reads; Handler.Perform runs the work Event
//     queued (handing deliveries to consumers) on the reader goroutine,
//     without the lock. The events' byte slices alias the core's buffers:
//     Event copies what it keeps.
//   - RoomLocked says whether a channel may publish (write-buffer room,
//     channel.flow, connection.blocked); Reclaim, Dying, Done, Close and
//     Abort do what their names say.
//
// # Goroutines and timers
//
// One goroutine per connection, the reader, plus a writer while there is
// writing to do, and two timers. An idle connection has only the reader,
// blocked in a read that holds no buffer: buffers come from a pool when
// data arrives and go back when a read is drained.
//
//   - The reader reads the socket, feeds the core and drains its events
//     (Handler.Event), then runs Handler.Perform. What the core queued in
//     answer (the handshake, close-ok, flow-ok) it writes itself on a fast
//     socket before it reads again. It shuts the driver down once the core
//     has closed: it stops the timers and closes the socket and Done.
//   - The writer goroutine is started when bytes wait and nobody holds the
//     write side; it writes everything pending in one write, again and
//     again, and ends after idleRelease with nothing to write. It sets no
//     write deadlines: an expired one breaks a TLS connection for good.
//   - The clock, a timer set for the core's deadline (heartbeats, the
//     handshake and close timeouts), calls HandleTimeout when it passes,
//     writes what that queued (a heartbeat) and kicks the reader. It runs
//     whatever the reader and the writer are doing, so a peer that stops
//     reading (a blocked write) or goes silent (a blocked read) is still
//     timed out. It is re-armed whenever the core's deadline moves
//     (pokeLocked, after every command, read and tick); time enters the
//     core only here and at Start.
//   - The idle timer runs idleRelease after the last read or write; if
//     nothing happened since, the core trims its spare buffers (Trim) and
//     the outbound buffer goes back to the pool.
//
// A core command that produces events outside a read (Close, a timeout)
// is followed by a kick: a read deadline in the past interrupts the
// current reader, which drains the events.
//
// # Who reads
//
// The read side of the socket has one owner at a time (owner, guarded by
// the lock): the reader goroutine, nobody (lent out), or a goroutine in
// Await. On a request/response exchange (one publish at a time, waiting
// for each confirm; one RPC after another) the reader would wake the
// waiting goroutine for each reply, and that wake-up costs more CPU than
// the rest of the round trip. So, on a fast socket (below), after a read
// during which a goroutine blocked in Await, and when the connection is
// quiet (open, not blocked, no consumer, nobody waiting for write room, at
// most one goroutine in Await), the reader lends the socket out and parks.
// The next goroutine that Awaits reads the socket itself, drains the
// events as the reader would, and returns with its answer.
//
//   - A waiter that reads events which queue work for Perform
//     (deliveries), or the connection's end, hands the socket, the work and
//     the shutdown to the reader: Perform and the shutdown run only on the
//     reader goroutine.
//   - When its answer came or its context ended, a waiter gives the
//     socket back: lent again if the connection is still quiet, else to
//     the reader.
//   - Await on a socket lent out while the connection is not quiet, a
//     kick, and Reclaim give the socket back to the reader. A socket
//     nobody took returns after the lend period (5 ms), so that heartbeats
//     and a broker's close are read within that time.
//   - A waiter's context that ends interrupts its read through a read
//     deadline (ctxWatch).
//
// # Who writes
//
// The write side has one holder at a time (wbusy): the writer goroutine,
// or, on a fast socket, a goroutine in Unlock(FlushNow), the reader
// after a read, or the clock after a tick. That goroutine
// writes the core's bytes itself with one non-blocking write when nobody
// else holds the write side and nothing written earlier waits; what the
// socket does not take is carried over to the writer, which writes it
// before anything newer. So no caller ever blocks on a full socket
// buffer, and bytes go out in the order the core queued them.
//
// # Sockets
//
// A transport only has to produce a net.Conn whose read deadline
// interrupts a blocked Read (every net.Conn of the standard library, TLS
// and netpipe do). Three kinds are told apart (socket.go):
//
//   - the standard library's TCP and Unix sockets are read and written
//     through the file descriptor (on Linux with raw system calls, which
//     spare the scheduler's bookkeeping), and wait for input holding no
//     buffer; they are fast;
//   - netpipe's in-memory pipes write without blocking too; they are fast,
//     so that tests over netpipe run the same paths as TCP;
//   - anything else (TLS, a wrapper) is used through Read and Write only,
//     by the reader and the writer goroutine: no direct writes, no
//     lending.
//
// # Locks
//
// One lock, the driver's, guards the core, the driver's state and the
// client's per-connection state. Nothing blocks while holding it: reads
// and writes happen with it released, on buffers that the holder of that
// side of the socket owns. The client's listeners have their own locks,
// taken after the driver's (a notification is posted from Handler.Event)
// and never the other way round.
package driver
