package statemachine

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/warren-amqp/warren/proto"
)

// Authenticator is one SASL mechanism. The machine offers the server the
// configured authenticators in order and uses the first whose Mechanism
// the server lists in connection.start.
//
// Multi-step mechanisms answer each connection.secure challenge in
// Challenge; single-step ones return an error there.
type Authenticator interface {
	// Mechanism is the SASL name, e.g. "PLAIN".
	Mechanism() string
	// Response is the initial response sent in connection.start-ok.
	Response() ([]byte, error)
	// Challenge answers a connection.secure challenge with the response
	// for connection.secure-ok.
	Challenge(challenge []byte) ([]byte, error)
}

// ErrUnexpectedChallenge is returned by single-step mechanisms when the
// server sends connection.secure.
var ErrUnexpectedChallenge = errors.New("amqp: mechanism does not expect a challenge")

// PlainAuth is SASL PLAIN (RFC 4616): the username and password in one
// message. Use it over TLS, or on a trusted network.
type PlainAuth struct {
	Username string
	Password string
}

// Mechanism returns "PLAIN".
func (PlainAuth) Mechanism() string { return "PLAIN" }

// Response returns "\x00user\x00password".
func (a PlainAuth) Response() ([]byte, error) {
	b := make([]byte, 0, 2+len(a.Username)+len(a.Password))
	b = append(b, 0)
	b = append(b, a.Username...)
	b = append(b, 0)
	return append(b, a.Password...), nil
}

// Challenge fails: PLAIN has one step.
func (PlainAuth) Challenge([]byte) ([]byte, error) { return nil, ErrUnexpectedChallenge }

// String hides the password.
func (a PlainAuth) String() string { return "PLAIN(" + a.Username + ")" }

// GoString hides the password from %#v too.
func (a PlainAuth) GoString() string {
	return "statemachine.PlainAuth{Username: " + strconv.Quote(a.Username) + "}"
}

// MarshalJSON hides the password from encoding/json too.
func (a PlainAuth) MarshalJSON() ([]byte, error) { return mechanismJSON("PLAIN", a.Username) }

// AMQPlainAuth is RabbitMQ's AMQPLAIN mechanism: LOGIN and PASSWORD as a
// field table written without its length prefix (py-amqp's default).
type AMQPlainAuth struct {
	Username string
	Password string
}

// Mechanism returns "AMQPLAIN".
func (AMQPlainAuth) Mechanism() string { return "AMQPLAIN" }

// Response returns the LOGIN/PASSWORD table fields.
func (a AMQPlainAuth) Response() ([]byte, error) {
	return proto.AppendTableFields(nil, proto.Table{
		{Name: "LOGIN", Value: proto.String(a.Username)},
		{Name: "PASSWORD", Value: proto.String(a.Password)},
	})
}

// Challenge fails: AMQPLAIN has one step.
func (AMQPlainAuth) Challenge([]byte) ([]byte, error) { return nil, ErrUnexpectedChallenge }

// String hides the password.
func (a AMQPlainAuth) String() string { return "AMQPLAIN(" + a.Username + ")" }

// GoString hides the password from %#v too.
func (a AMQPlainAuth) GoString() string {
	return "statemachine.AMQPlainAuth{Username: " + strconv.Quote(a.Username) + "}"
}

// MarshalJSON hides the password from encoding/json too.
func (a AMQPlainAuth) MarshalJSON() ([]byte, error) { return mechanismJSON("AMQPLAIN", a.Username) }

// mechanismJSON is {"Mechanism":…,"Username":…}: what a mechanism with a
// password may show.
func mechanismJSON(mechanism, username string) ([]byte, error) {
	return json.Marshal(struct{ Mechanism, Username string }{mechanism, username})
}

// ExternalAuth is SASL EXTERNAL: the server authenticates the client by
// other means, typically a TLS client certificate.
type ExternalAuth struct {
	// Identity is an optional authorization identity; empty means the one
	// the certificate implies.
	Identity string
}

// Mechanism returns "EXTERNAL".
func (ExternalAuth) Mechanism() string { return "EXTERNAL" }

// Response returns the identity.
func (a ExternalAuth) Response() ([]byte, error) { return []byte(a.Identity), nil }

// Challenge fails: EXTERNAL has one step.
func (ExternalAuth) Challenge([]byte) ([]byte, error) { return nil, ErrUnexpectedChallenge }
