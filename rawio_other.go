//go:build !unix

package warren

import "net"

// rawConn is unavailable here: reads go through the net.Conn and every
// write through the writer goroutine.
type rawConn struct{}

func newRawConn(net.Conn) *rawConn { return nil }

func (c *rawConn) tryWrite([]byte) (int, error) { return 0, nil }

func (c *rawConn) Read([]byte) (int, error) { return 0, nil }
