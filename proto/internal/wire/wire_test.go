package wire

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReaderTruncation(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(r *Reader)
		want string
	}{
		{"octet", nil, func(r *Reader) { r.Octet() }, "octet: need 1 bytes, have 0"},
		{"short", []byte{1}, func(r *Reader) { r.Short() }, "short: need 2 bytes, have 1"},
		{"long", []byte{1, 2, 3}, func(r *Reader) { r.Long() }, "long: need 4 bytes, have 3"},
		{"longlong", []byte{1, 2, 3, 4, 5, 6, 7}, func(r *Reader) { r.LongLong() }, "longlong: need 8 bytes, have 7"},
		{"short string", []byte{3, 'a', 'b'}, func(r *Reader) { r.ShortStr() }, "short string: need 3 bytes, have 2"},
		{"bytes", []byte{1}, func(r *Reader) { r.Bytes(2) }, "bytes: need 2 bytes, have 1"},
		{"long string", []byte{0, 0, 0, 9, 'a'}, func(r *Reader) { r.LongStr() }, "long string: declared 9 bytes, have 1"},
		{"the first error wins", []byte{1}, func(r *Reader) {
			r.Short()
			r.Octet()
			r.Fail(errors.New("later"))
		}, "short: need 2 bytes, have 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.in)
			tt.read(&r)
			err := r.Err()
			require.ErrorIs(t, err, ErrTruncated)
			require.Equal(t, tt.want+": truncated", err.Error())
			require.Same(t, err, r.Err(), "built once")
			// Every read after the first error returns the zero value.
			require.Zero(t, r.Octet())
			require.Zero(t, r.LongLong())
			require.Nil(t, r.ShortStr())
		})
	}
}

func TestReaderReads(t *testing.T) {
	r := NewReader([]byte{7, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 2, 'h', 'i', 0, 0, 0, 1, 'x', 9})
	require.Equal(t, uint8(7), r.Octet())
	require.Equal(t, uint16(2), r.Short())
	require.Equal(t, uint32(3), r.Long())
	require.Equal(t, uint64(4), r.LongLong())
	require.Equal(t, []byte("hi"), r.ShortStr())
	require.Equal(t, []byte("x"), r.LongStr())
	require.Equal(t, 1, r.Len())
	require.Equal(t, []byte{9}, r.Bytes(1))
	require.NoError(t, r.Err())
	require.Equal(t, 24, r.Offset())
}

func TestReaderFailKeepsExplicitError(t *testing.T) {
	r := NewReader(nil)
	boom := errors.New("boom")
	r.Fail(boom)
	r.Octet()
	require.Same(t, boom, r.Err())
}
