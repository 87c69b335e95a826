// Package statemachine is Warren's sans-IO AMQP 0-9-1 client: the whole
// client side of the protocol as a pure state machine. Bytes go in, events
// and outbound bytes come out, and time is passed in. It never touches a
// socket, a file or the clock, starts no goroutine and takes no lock, so it
// can be embedded in any event loop, fuzzed, and benchmarked without a
// network.
//
// # Theory of operation
//
// A Conn is created from a Config and driven by one goroutine:
//
//   - Start(now) queues the protocol header.
//   - Feed(p) hands in bytes read from the peer, in any split; FeedEOF
//     reports the end of the stream. Feed only buffers: frames are parsed
//     as NextEvent is called, one at a time (h11's receive_data/next_event).
//     Adopt, and ReadBuffer with Received, do the same without a copy.
//   - Commands (OpenChannel, Call, Publish, CloseChannel, Close,
//     UpdateSecret) queue frames and return at once; they fail without
//     sending anything when the connection or channel cannot take them.
//   - NextEvent returns what happened (EventDelivery, EventReply,
//     EventConfirm, EventChannelClosed, …) until it returns EventNone.
//   - AppendOutbound appends the bytes to write to the peer.
//   - Deadline says when to call HandleTimeout(now) next, for heartbeats
//     and the handshake and close timeouts.
//
// After any input or command: drain NextEvent, write AppendOutbound, arm
// Deadline. Slices in an Event (message bodies and properties, Publishes)
// alias the machine's buffers and are valid until the next Feed, Adopt,
// NextEvent or HandleTimeout call.
//
// # Requests and tokens
//
// Call and UpdateSecret return a Token for each synchronous request (0
// for a method without a reply). Every token is answered by exactly one
// EventReply carrying it: the reply, or, when the request's channel or the
// connection ends first, a failure (Method nil, Err the channel's or
// connection's error, ErrClosed after a clean close), reported in request
// order just before EventChannelClosed or EventClosed. (A basic.get whose
// message is over Config.MaxMessageSize fails too, with ErrMessageTooLarge.)
// A caller keeps its waiters in a map by token and needs no queue of its
// own.
//
// # Publishes and refs
//
// Publish takes a ref, any value of the caller's (typically a pointer to
// its confirm handle; nil if unused). In confirm mode the machine keeps it
// with the publish and hands it back: EventConfirm.Publishes lists the
// publishes a confirm settles, sequence numbers and refs, and
// EventChannelClosed.Publishes those that will never be confirmed; a
// basic.return bound to a publish carries its ref in Message.PublishRef.
// So the caller needs no map of its own from sequence number to handle.
// Publishes slices point into an arena the machine reuses once every
// queued event has been returned: copy what you keep.
//
// # Buffers
//
// The machine holds an input buffer, an outbound buffer and its event
// queue, and lets go of what an idle connection does not need. A driver
// that takes buffers from a pool when data arrives reads into a buffer of
// its own and hands it over with Adopt when HasInput is false (the machine
// keeps it, no copy), or into ReadBuffer's space followed by Received when
// a partial frame is buffered. Once NextEvent has returned EventNone,
// ReleaseInput returns the (emptied) input buffer for reuse, unless a
// partial frame is still buffered. Once AppendOutbound has taken every
// outbound byte, ReleaseOutbound returns the emptied outbound buffer; the
// next command that sends something starts a new one. The event queue and
// the Publishes arena shrink by themselves after a burst.
//
// # Protocol rules in one place
//
// The connection moves through State (see its doc for the transitions) and
// each channel through ChannelState. Synchronous requests are matched to
// replies in order per channel (frames.AcceptsReply says which reply
// answers which request). Content is assembled from method, header and body
// frames with the body checked against the announced size; a message over
// Config.MaxMessageSize is refused before it is buffered. In confirm mode
// publishes are numbered from the first one queued after confirm.select,
// and basic.return is bound to the publish whose ack or nack follows it.
// A protocol violation by the peer makes the machine send connection.close
// with the right reply code and report a *proto.ConnectionError with
// Origin ByLocal; a close from the peer is answered with close-ok and
// reported with Origin ByPeer. After a close is sent, only close and
// close-ok count.
package statemachine
