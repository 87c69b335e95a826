// Package tls dials TLS connections for Warren (the amqps:// scheme): a
// byte stream from another transport, usually [tcp.Dialer], with a TLS
// client handshake on top.
//
//	d := &tls.Dialer{Addr: "rabbit.example.com:5671"}
//	conn, err := d.Dial(ctx) // a *crypto/tls.Conn, handshake done
//
// # Verification
//
// Certificates are verified by default, against the system roots or
// Config.RootCAs. The server name checked (and sent as SNI) is
// Config.ServerName if set, else the host of [Dialer.Addr]; an IP address is
// checked against the certificate's IP addresses. Verification is skipped
// only when the caller's own [crypto/tls.Config] sets InsecureSkipVerify
// (which [ConfigFromFiles] does for verify=false, and only then). The
// caller's Config is cloned per dial and never modified.
//
// Client certificates in Config.Certificates (or GetClientCertificate) are
// presented when the server asks, which is what RabbitMQ's SASL EXTERNAL
// mechanism authenticates with. With TLS 1.3 a server that rejects the
// client's certificate does so after the client's handshake has finished,
// so that failure surfaces on the first Read rather than from Dial.
//
// # Files
//
// [ConfigFromFiles] builds a Config from PEM files, matching the amqps URI
// query parameters cacertfile, certfile, keyfile, server_name_indication and
// verify.
//
// # Contexts and timeouts
//
// The handshake runs under the Dial context and [Dialer.HandshakeTimeout];
// a peer that accepts the TCP connection but never answers cannot hang
// Dial. Errors wrap the cause with %w, so [errors.As] finds
// [*crypto/tls.CertificateVerificationError] and [crypto/x509.UnknownAuthorityError],
// and [errors.Is] finds the context's error.
//
// This package imports nothing from Warren except transport/tcp.
package tls
