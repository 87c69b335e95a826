//go:build !unix

package driver

import "net"

// newRawSocket: descriptor I/O is Unix-only; elsewhere every socket is
// plain (or a pipe).
func newRawSocket(net.Conn, *bufPool) socket { return nil }
