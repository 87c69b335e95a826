// Package proto is Warren's shared AMQP 0-9-1 vocabulary: field tables and
// their values, the basic content properties, reply codes and the error
// types every layer reports.
//
// It has no I/O and no state. proto/frames builds the frame codec on it,
// proto/statemachine the sans-IO client, and the root warren package the
// blocking client; all of them report failures with ConnectionError and
// ChannelError from here, so errors.As and errors.Is work the same at
// every layer:
//
//	var ce *proto.ChannelError
//	if errors.As(err, &ce) && errors.Is(err, proto.NotFound) { … }
//
// Field tables follow RabbitMQ's reading of the 0-9-1 errata (type letters
// t b B s u I i l L f d D S x A T F V). A decoded Value keeps its letter so
// that it re-encodes to the same bytes.
package proto
