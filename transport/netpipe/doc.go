// Package netpipe will provide a Warren transport; it arrives with the client
// API issue. Until then the package is empty.
package netpipe
