// Package netpipe provides an in-memory, buffered, full-duplex [net.Conn]
// pair for tests and benchmarks of Warren's client.
//
// # Why not net.Pipe
//
// [net.Pipe] is synchronous: a Write blocks until the peer has read every
// byte. A real TCP connection buffers, so a client that writes a frame and
// then reads the reply works over TCP but can deadlock over net.Pipe if
// both sides write first. netpipe behaves like TCP instead:
//
//   - Each direction has a bounded buffer ([Options.BufferSize], 64 KiB by
//     default). A Write returns as soon as all its bytes fit; when the buffer
//     is full it blocks until the peer reads (back-pressure), so a peer that
//     stops reading stalls the writer exactly as a full socket buffer does.
//   - SetDeadline, SetReadDeadline and SetWriteDeadline work; a blocked or
//     later call fails with a [*net.OpError] wrapping
//     [os.ErrDeadlineExceeded], whose Timeout method reports true.
//   - Close works like TCP: the peer still reads the bytes already buffered,
//     then gets [io.EOF]; the closed side's own calls fail with
//     [net.ErrClosed]; the peer's writes fail with [io.ErrClosedPipe].
//     [Conn.CloseWrite] half-closes like [net.TCPConn.CloseWrite].
//
// # testing/synctest
//
// The pipe is built only on [sync.Mutex] and [sync.Cond], and its deadline
// timers are made with [time.AfterFunc] when a deadline is set. A goroutine
// blocked in Read or Write waits in [sync.Cond.Wait], which testing/synctest
// counts as durably blocked, and the timers belong to the bubble they were
// made in. So a pipe created inside a [testing/synctest] bubble lets the
// bubble's fake clock advance while the client and a scripted server wait on
// each other, and deadline tests run instantly without sleeping:
//
//	synctest.Test(t, func(t *testing.T) {
//		client, server := netpipe.Pipe()
//		defer client.Close()
//		defer server.Close()
//		client.SetReadDeadline(time.Now().Add(5 * time.Second))
//		_, err := client.Read(make([]byte, 1)) // 5s of fake time, no real wait
//		// errors.Is(err, os.ErrDeadlineExceeded) == true
//	})
//
// Create the pipe inside the bubble that uses it: waking a goroutine that is
// blocked inside a bubble from outside it is a fatal error in synctest.
//
// # Dialing
//
// Code under test usually dials. [Connector] has the Dial(ctx) shape of the
// other Warren transports and runs a scripted server function on the server
// side of a fresh pipe for every dial; [Listener] instead hands server sides
// out through Accept, for code written against [net.Listener].
//
// # Theory of operation
//
// A pipe is two one-way streams sharing one mutex and one condition
// variable. A stream is a byte queue bounded by BufferSize plus two flags:
// the writing end is closed (readers see EOF once the queue is empty) and
// the reading end is closed (writers fail and queued bytes are dropped).
// Every state change (bytes queued or consumed, a close, a deadline timer
// firing) broadcasts on the condition variable and every waiter re-checks
// its own condition. Writes on one Conn are serialized, as for a socket, so
// concurrent Writes never interleave their bytes.
package netpipe
