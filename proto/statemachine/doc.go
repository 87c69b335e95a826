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
// Deadline. Slices in an Event alias the machine's buffers and are valid
// until the next Feed, NextEvent or HandleTimeout call.
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
