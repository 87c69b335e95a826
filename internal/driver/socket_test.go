package driver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/transport/netpipe"
)

// netpipe's pipes take the fast path (so that tests over them run the
// paths TCP users run); only buffers of the pooled size are pooled.
func TestPipeSocketAndPool(t *testing.T) {
	client, server := netpipe.Pipe()
	defer client.Close()
	defer server.Close()
	s := newSocket(client, &bufPool{})
	require.IsType(t, &pipeSocket{}, s)
	require.True(t, s.fast())
	n, err := s.tryWrite([]byte("abc"))
	require.NoError(t, err)
	require.Equal(t, 3, n)

	var p bufPool
	b := p.get()
	require.Len(t, b, poolBufSize)
	p.put(make([]byte, 10)) // not pooled: get still makes a full-size one
	require.Len(t, p.get(), poolBufSize)
}
