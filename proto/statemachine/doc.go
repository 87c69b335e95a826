// Package statemachine will hold Warren's sans-IO AMQP 0-9-1 client
// connection: bytes in, events and outbound bytes out, time passed in.
// It is built in its own issue; until then the package is empty.
package statemachine
