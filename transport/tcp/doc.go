// Package tcp dials the TCP byte stream that Warren speaks AMQP 0-9-1 over.
//
// A [Dialer] is a plain struct that names where to connect and how; its
// [Dialer.Dial] method makes one connection per call and can be called again
// to reconnect, so the client keeps the Dialer and redials after a lost
// connection. It is the same Dial(ctx) (net.Conn, error) shape as the other
// Warren transports (transport/tls wraps it, transport/netpipe fakes it in
// tests).
//
//	d := &tcp.Dialer{Addr: "rabbit.example.com:5672"}
//	conn, err := d.Dial(ctx)
//
// Every connection has TCP_NODELAY set (AMQP writes small frames that must
// not wait for Nagle's algorithm) and TCP keep-alive on, every
// [DefaultKeepAlive] unless [Dialer.KeepAlive] says otherwise, so a peer
// that vanishes is eventually noticed even between AMQP heartbeats.
//
// # Proxies
//
// Set [Dialer.ProxyURL] to "socks5://[user:password@]host[:port]" to
// connect through a SOCKS5 proxy (RFC 1928, with RFC 1929 username and
// password authentication), or set [Dialer.Proxy] to any
// [golang.org/x/net/proxy.ContextDialer]. The target address is passed to
// the proxy unresolved, so the proxy resolves the host name. Environment
// variables such as ALL_PROXY are not consulted.
//
// # Errors
//
// Dial errors wrap the underlying error with %w (so [errors.Is] finds
// [context.Canceled], [context.DeadlineExceeded] and [errors.As] finds
// [*net.OpError]) and name the address dialed, and the proxy if any with
// its password redacted.
//
// This package imports nothing else from Warren.
package tcp
