package driver

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The input side keeps the largest buffer the core gave back (up to
// maxKeptRead) for the next read, and forgets it when the connection
// goes quiet; pooled-size buffers go to the pool as before.
func TestBufPoolKeepsLargeReadBuffer(t *testing.T) {
	var p bufPool
	require.Len(t, p.getRead(), poolBufSize, "nothing kept: a pooled buffer")

	big := make([]byte, 10, 3*poolBufSize)
	p.putRead(big)
	p.putRead(make([]byte, 0, 2*poolBufSize)) // smaller than the kept one
	got := p.getRead()
	require.Equal(t, 3*poolBufSize, len(got), "the largest, at full length")
	require.Same(t, &big[0], &got[0])
	require.Len(t, p.getRead(), poolBufSize, "taken: not handed out twice")

	p.putRead(got)
	p.dropRead()
	require.Len(t, p.getRead(), poolBufSize, "dropped when quiet")

	p.putRead(make([]byte, 0, maxKeptRead+1))
	require.Len(t, p.getRead(), poolBufSize, "too large to keep")
}
