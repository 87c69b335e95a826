//go:build !unix

package warren

import "net"

// rawWriter is unavailable here: every write goes through the writer
// goroutine.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (w *rawWriter) tryWrite([]byte) (int, error) { return 0, nil }
