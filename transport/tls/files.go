package tls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ConfigFromFiles builds a TLS client configuration from PEM files, for the
// amqps URI query parameters of the same meaning:
//
//   - caFile (cacertfile): certificates to trust instead of the system
//     roots. Empty means the system roots.
//   - certFile, keyFile (certfile, keyfile): the client certificate chain
//     and its private key, presented to servers that ask (SASL EXTERNAL).
//     Both empty means no client certificate; an empty keyFile with a
//     certFile means the key is in certFile too.
//   - serverName (server_name_indication): the name to verify and send as
//     SNI. Empty means the host being dialed ([Dialer] fills it in).
//   - verify (verify=verify_peer, the default, or verify_none): false turns
//     certificate verification OFF (InsecureSkipVerify), which lets anyone
//     in the network path read and alter the traffic. Use it for tests
//     only.
//
// The result has MinVersion TLS 1.2. The caller owns it and may adjust it
// further.
func ConfigFromFiles(caFile, certFile, keyFile, serverName string, verify bool) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: !verify,
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s: no PEM certificates found", caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile == "" && keyFile != "":
		return nil, errors.New("tls: key file given without a certificate file")
	case certFile != "":
		if keyFile == "" {
			keyFile = certFile
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s, key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
