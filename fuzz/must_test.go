package fuzz

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fuzz targets check every frame of every input, so their assertions
// must cost nothing when they pass. testify's assertions call t.Helper (a
// stack walk) every time, which dominated the targets' time; these wrappers
// test the condition first and hand over to testify only to report a
// failure with its usual diff.

// equal is require.Equal, free on success.
func equal(t *testing.T, want, got any, msgAndArgs ...any) {
	if !assert.ObjectsAreEqual(want, got) {
		t.Helper()
		require.Equal(t, want, got, msgAndArgs...)
	}
}

// equalValues is require.EqualValues, free on success.
func equalValues(t *testing.T, want, got any, msgAndArgs ...any) {
	if !assert.ObjectsAreEqualValues(want, got) {
		t.Helper()
		require.EqualValues(t, want, got, msgAndArgs...)
	}
}

// noError is require.NoError, free on success.
func noError(t *testing.T, err error, msgAndArgs ...any) {
	if err != nil {
		t.Helper()
		require.NoError(t, err, msgAndArgs...)
	}
}

// isTrue is require.True, free on success.
func isTrue(t *testing.T, cond bool, msgAndArgs ...any) {
	if !cond {
		t.Helper()
		require.True(t, cond, msgAndArgs...)
	}
}

// errorIs is require.ErrorIs, free on success.
func errorIs(t *testing.T, err, target error, msgAndArgs ...any) {
	if !errors.Is(err, target) {
		t.Helper()
		require.ErrorIs(t, err, target, msgAndArgs...)
	}
}
