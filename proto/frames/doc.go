// Package frames is Warren's AMQP 0-9-1 frame codec: the protocol header,
// the four frame types (method, content header, body, heartbeat), and every
// method of the protocol with RabbitMQ's extensions, generated from the
// project's own protocol description (internal/protocol/amqp.def at the
// repository root).
//
// The codec has no state beyond reusable buffers, performs no I/O and
// starts no goroutines. Decoding works on byte slices:
//
//   - ReadFrame splits one frame off the front of a buffer. It returns
//     n == 0 and a nil error when the buffer holds only part of a frame, so a
//     caller can feed any split of a valid stream; malformed input gets an
//     *Error naming what was wrong and the reply code to close with.
//   - Parser.ParseMethod decodes a method payload into a struct it reuses,
//     and ContentHeader.Parse decodes a content header into a zero-copy view.
//
// Encoding is append-style: AppendMethod, AppendContentHeader, AppendBody,
// AppendHeartbeat and AppendMessage add complete frames to the end of a
// caller's slice, so the caller owns and reuses its buffer.
//
// # Ownership
//
// Frame.Payload, the byte slices of a ContentHeader's properties and a
// body frame's payload all alias the buffer given to ReadFrame: they are
// valid until the caller overwrites that buffer. A Method returned by
// Parser.ParseMethod is valid until the next ParseMethod call on the same
// Parser; its strings and tables are owned Go values.
//
// Nothing in this package is safe for concurrent use unless stated; the
// functions are, since they share nothing.
package frames

//go:generate go run ../../internal/protocol/gen -out methods_gen.go
