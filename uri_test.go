package warren

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// uriTestSecret is a distinctive password used to check that nothing prints it.
const uriTestSecret = "Zq9SECRETpw"

func TestParseURIDefaults(t *testing.T) {
	for _, s := range []string{"amqp://", "amqp://localhost", "amqp://localhost/", "amqp://localhost:5672/%2F", "AMQP://localhost"} {
		t.Run(s, func(t *testing.T) {
			u, err := ParseURI(s)
			require.NoError(t, err)
			require.Equal(t, URI{
				Scheme:   "amqp",
				Host:     "localhost",
				Port:     5672,
				Username: "guest",
				Password: "guest",
				Vhost:    "/",
			}, u)
			require.False(t, u.TLS())
			require.False(t, u.HasHeartbeat)
			require.Equal(t, "localhost:5672", u.Addr())
		})
	}
}

func TestParseURIAMQPSDefaults(t *testing.T) {
	u, err := ParseURI("amqps://broker.example.com")
	require.NoError(t, err)
	require.Equal(t, URI{
		Scheme:   "amqps",
		Host:     "broker.example.com",
		Port:     5671,
		Username: "guest",
		Password: "guest",
		Vhost:    "/",
		Verify:   "verify_peer",
	}, u)
	require.True(t, u.TLS())
	require.Equal(t, "broker.example.com:5671", u.Addr())

	u, err = ParseURI("amqps://broker:5999?verify=verify_none")
	require.NoError(t, err)
	require.Equal(t, 5999, u.Port)
	require.Equal(t, "verify_none", u.Verify)
}

func TestParseURIVhost(t *testing.T) {
	tests := []struct {
		uri   string
		vhost string
	}{
		{"amqp://host", "/"},
		{"amqp://host/", "/"},
		{"amqp://host/%2F", "/"},
		{"amqp://host/%2f", "/"},
		{"amqp://host/name", "name"},
		{"amqp://host/a%2Fb", "a/b"},
		{"amqp://host/%2Fleading", "/leading"},
		{"amqp://host/v%20h", "v h"},
		{"amqp://host/v+h", "v+h"}, // '+' is not a space
		{"amqp://host?heartbeat=1", "/"},
		{"amqp://host/?heartbeat=1", "/"},
		{"amqp://host/prod?heartbeat=1", "prod"},
		{"amqp:///vhost", "vhost"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			require.Equal(t, tt.vhost, u.Vhost)
		})
	}
}

func TestParseURIUserinfo(t *testing.T) {
	tests := []struct {
		uri, user, pass, host string
	}{
		{"amqp://us%40er:p%3Ass@host/v%2Fh", "us@er", "p:ss", "host"},
		{"amqp://user:pass@host", "user", "pass", "host"},
		{"amqp://user%61:%61pass@ho%61st:10000/v%2fhost", "usera", "apass", "hoast"},
		{"amqp://user@host", "user", "guest", "host"}, // absent password: default (spec)
		{"amqp://user:@host", "user", "", "host"},     // empty password is empty
		{"amqp://:@host", "", "", "host"},
		{"amqp://:pass@host", "", "pass", "host"},
		{"amqp://user:pa:ss@host", "user", "pa:ss", "host"},        // only the first ':' separates
		{"amqp://user:p@ss@host", "user", "p@ss", "host"},          // the last '@' ends userinfo
		{"amqp://user:p+ss@host", "user", "p+ss", "host"},          // '+' is literal
		{"amqp://user:%C3%A9t%C3%A9@", "user", "été", "localhost"}, // UTF-8
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			require.Equal(t, tt.user, u.Username)
			require.Equal(t, tt.pass, u.Password)
			require.Equal(t, tt.host, u.Host)
		})
	}
}

func TestParseURIHostPort(t *testing.T) {
	tests := []struct {
		uri, host string
		port      int
		addr      string
	}{
		{"amqp://[::1]:5673/", "::1", 5673, "[::1]:5673"},
		{"amqp://[::1]", "::1", 5672, "[::1]:5672"},
		{"amqps://[2001:db8::7]/", "2001:db8::7", 5671, "[2001:db8::7]:5671"},
		{"amqp://[fe80::1%25eth0]:1234", "fe80::1%eth0", 1234, "[fe80::1%eth0]:1234"},
		{"amqp://u:p@[::1]:1/", "::1", 1, "[::1]:1"},
		{"amqp://127.0.0.1:65535", "127.0.0.1", 65535, "127.0.0.1:65535"},
		{"amqp://:10000", "localhost", 10000, "localhost:10000"},
		{"amqp://user:pass@/vh", "localhost", 5672, "localhost:5672"},
		{"amqp://host:", "host", 5672, "host:5672"}, // empty port: default (RFC 3986)
		{"amqp://my%2Dhost", "my-host", 5672, "my-host:5672"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			require.Equal(t, tt.host, u.Host)
			require.Equal(t, tt.port, u.Port)
			require.Equal(t, tt.addr, u.Addr())
		})
	}
}

func TestParseURIQueryParameters(t *testing.T) {
	tests := []struct {
		name  string
		uri   string
		check func(t *testing.T, u URI)
	}{
		{"heartbeat", "amqp://h?heartbeat=30", func(t *testing.T, u URI) {
			require.True(t, u.HasHeartbeat)
			require.Equal(t, 30*time.Second, u.Heartbeat)
		}},
		{"heartbeat zero", "amqp://h?heartbeat=0", func(t *testing.T, u URI) {
			require.True(t, u.HasHeartbeat)
			require.Equal(t, time.Duration(0), u.Heartbeat)
		}},
		{"heartbeat max", "amqp://h?heartbeat=65535", func(t *testing.T, u URI) {
			require.Equal(t, 65535*time.Second, u.Heartbeat)
		}},
		{"no heartbeat", "amqp://h?channel_max=1", func(t *testing.T, u URI) {
			require.False(t, u.HasHeartbeat)
			require.Equal(t, time.Duration(0), u.Heartbeat)
		}},
		{"connection_timeout", "amqp://h?connection_timeout=10000", func(t *testing.T, u URI) {
			require.Equal(t, 10*time.Second, u.ConnectionTimeout)
		}},
		{"connection_timeout ms", "amqp://h?connection_timeout=1", func(t *testing.T, u URI) {
			require.Equal(t, time.Millisecond, u.ConnectionTimeout)
		}},
		{"channel_max", "amqp://h?channel_max=2047", func(t *testing.T, u URI) {
			require.Equal(t, uint16(2047), u.ChannelMax)
		}},
		{"channel_max max", "amqp://h?channel_max=65535", func(t *testing.T, u URI) {
			require.Equal(t, uint16(65535), u.ChannelMax)
		}},
		{"frame_max", "amqp://h?frame_max=131072", func(t *testing.T, u URI) {
			require.Equal(t, uint32(131072), u.FrameMax)
		}},
		{"frame_max zero", "amqp://h?frame_max=0", func(t *testing.T, u URI) {
			require.Equal(t, uint32(0), u.FrameMax)
		}},
		{"frame_max bounds", "amqp://h?frame_max=4096", func(t *testing.T, u URI) {
			require.Equal(t, uint32(4096), u.FrameMax)
		}},
		{"auth_mechanism", "amqp://h?auth_mechanism=plain", func(t *testing.T, u URI) {
			require.Equal(t, []string{"PLAIN"}, u.AuthMechanism)
		}},
		{"auth_mechanism amqplain", "amqp://h?auth_mechanism=AMQPlain", func(t *testing.T, u URI) {
			require.Equal(t, []string{"AMQPLAIN"}, u.AuthMechanism)
		}},
		{"auth_mechanism external", "amqps://h?auth_mechanism=EXTERNAL", func(t *testing.T, u URI) {
			require.Equal(t, []string{"EXTERNAL"}, u.AuthMechanism)
		}},
		{"repeated auth_mechanism", "amqp://h?auth_mechanism=external&auth_mechanism=plain&auth_mechanism=amqplain", func(t *testing.T, u URI) {
			require.Equal(t, []string{"EXTERNAL", "PLAIN", "AMQPLAIN"}, u.AuthMechanism)
		}},
		{"tls files", "amqps://h?cacertfile=/path/to/ca.pem&certfile=/path/to/client.pem&keyfile=%2Fpath%2Fto%2Fkey%20file.pem", func(t *testing.T, u URI) {
			require.Equal(t, "/path/to/ca.pem", u.CACertFile)
			require.Equal(t, "/path/to/client.pem", u.CertFile)
			require.Equal(t, "/path/to/key file.pem", u.KeyFile)
		}},
		{"server_name_indication", "amqps://10.0.0.1?server_name_indication=myhost", func(t *testing.T, u URI) {
			require.Equal(t, "myhost", u.ServerName)
		}},
		{"verify_peer", "amqps://h?verify=verify_peer", func(t *testing.T, u URI) {
			require.Equal(t, "verify_peer", u.Verify)
		}},
		{"verify_none", "amqps://h?verify=verify_none", func(t *testing.T, u URI) {
			require.Equal(t, "verify_none", u.Verify)
		}},
		{"empty pieces", "amqp://h/?&heartbeat=5&&", func(t *testing.T, u URI) {
			require.Equal(t, 5*time.Second, u.Heartbeat)
		}},
		{"empty query", "amqp://h/v?", func(t *testing.T, u URI) {
			require.Equal(t, "v", u.Vhost)
		}},
		{"encoded name", "amqp://h?heart%62eat=7", func(t *testing.T, u URI) {
			require.Equal(t, 7*time.Second, u.Heartbeat)
		}},
		{"everything", "amqps://u:p@h:1/v?heartbeat=10&connection_timeout=2500&channel_max=100&frame_max=8192" +
			"&auth_mechanism=plain&auth_mechanism=external&cacertfile=ca&certfile=c&keyfile=k" +
			"&server_name_indication=sni.example&verify=verify_none", func(t *testing.T, u URI) {
			require.Equal(t, URI{
				Scheme: "amqps", Host: "h", Port: 1, Username: "u", Password: "p", Vhost: "v",
				Heartbeat: 10 * time.Second, HasHeartbeat: true,
				ConnectionTimeout: 2500 * time.Millisecond,
				ChannelMax:        100, FrameMax: 8192,
				AuthMechanism: []string{"PLAIN", "EXTERNAL"},
				CACertFile:    "ca", CertFile: "c", KeyFile: "k",
				ServerName: "sni.example", Verify: "verify_none",
			}, u)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			tt.check(t, u)
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	const pw = uriTestSecret
	tests := []struct {
		name      string
		uri       string
		component string
		param     string
		value     string // expected URIError.Value; "" means withheld or none
		numErr    bool   // wraps a *strconv.NumError
		contains  string // substring of the message
	}{
		{"bad scheme", "http://u:" + pw + "@host/", "scheme", "", "http", false, "unsupported scheme"},
		{"missing scheme", "u:" + pw + "@host/", "scheme", "", "", false, "missing scheme"},
		{"single slash", "amqp:/u:" + pw + "@host/", "scheme", "", "", false, "missing scheme"},
		{"bad port", "amqp://u:" + pw + "@host:abc/", "port", "", "abc", true, "not a decimal port number"},
		{"port 70000", "amqp://u:" + pw + "@host:70000/", "port", "", "70000", false, "out of range"},
		{"port 0", "amqp://u:" + pw + "@host:0/", "port", "", "0", false, "out of range"},
		{"port huge", "amqp://u:" + pw + "@host:99999999999999999999/", "port", "", "99999999999999999999", true, "out of range"},
		{"negative port", "amqp://u:" + pw + "@host:-1/", "port", "", "-1", false, "between 1 and 65535"},
		{"unbracketed ipv6", "amqp://u:" + pw + "@::1/", "host", "", "::1", false, "brackets"},
		{"unclosed bracket", "amqp://u:" + pw + "@[::1/", "host", "", "[::1", false, "missing ']'"},
		{"junk after bracket", "amqp://u:" + pw + "@[::1]x/", "host", "", "[::1]x", false, "after ']'"},
		{"bad ipv6", "amqp://u:" + pw + "@[nope]/", "host", "", "nope", false, "invalid IPv6"},
		{"bad host char", "amqp://u:" + pw + "@ho%2Fst/", "host", "", "ho/st", false, "invalid character"},
		{"bad heartbeat", "amqp://u:" + pw + "@host/?heartbeat=abc", "query", "heartbeat", "abc", true, "seconds"},
		{"heartbeat too big", "amqp://u:" + pw + "@host/?heartbeat=65536", "query", "heartbeat", "65536", false, "between 0 and 65535"},
		{"heartbeat fraction", "amqp://u:" + pw + "@host/?heartbeat=1.5", "query", "heartbeat", "1.5", true, "seconds"},
		{"negative heartbeat", "amqp://u:" + pw + "@host/?heartbeat=-1", "query", "heartbeat", "-1", false, "negative"},
		{"negative connection_timeout", "amqp://u:" + pw + "@host/?connection_timeout=-5", "query", "connection_timeout", "-5", false, "negative"},
		{"bad connection_timeout", "amqp://u:" + pw + "@host/?connection_timeout=10s", "query", "connection_timeout", "10s", true, "milliseconds"},
		{"connection_timeout overflow", "amqp://u:" + pw + "@host/?connection_timeout=9223372036855", "query", "connection_timeout", "9223372036855", false, "milliseconds"},
		{"negative channel_max", "amqp://u:" + pw + "@host/?channel_max=-1", "query", "channel_max", "-1", false, "negative"},
		{"channel_max too big", "amqp://u:" + pw + "@host/?channel_max=65536", "query", "channel_max", "65536", false, "between 0 and 65535"},
		{"negative frame_max", "amqp://u:" + pw + "@host/?frame_max=-4096", "query", "frame_max", "-4096", false, "negative"},
		{"frame_max too small", "amqp://u:" + pw + "@host/?frame_max=4095", "query", "frame_max", "4095", false, "4096"},
		{"frame_max too big", "amqp://u:" + pw + "@host/?frame_max=4294967296", "query", "frame_max", "4294967296", false, "4294967295"},
		{"unknown parameter", "amqp://u:" + pw + "@host/?hearbeat=5", "query", "hearbeat", "", false, "unknown parameter"},
		{"parameter without value", "amqp://u:" + pw + "@host/?heartbeat", "query", "heartbeat", "", false, "missing '='"},
		{"empty value", "amqp://u:" + pw + "@host/?heartbeat=", "query", "heartbeat", "", false, "empty value"},
		{"duplicate heartbeat", "amqp://u:" + pw + "@host/?heartbeat=1&heartbeat=2", "query", "heartbeat", "", false, "more than once"},
		{"unknown auth_mechanism", "amqp://u:" + pw + "@host/?auth_mechanism=CRAM-MD5", "query", "auth_mechanism", "CRAM-MD5", false, "unknown SASL mechanism"},
		{"duplicate auth_mechanism", "amqp://u:" + pw + "@host/?auth_mechanism=plain&auth_mechanism=PLAIN", "query", "auth_mechanism", "PLAIN", false, "more than once"},
		{"bad verify", "amqps://u:" + pw + "@host/?verify=yes", "query", "verify", "yes", false, "verify_peer or verify_none"},
		{"verify case", "amqps://u:" + pw + "@host/?verify=VERIFY_PEER", "query", "verify", "VERIFY_PEER", false, "verify_peer or verify_none"},
		{"tls param on amqp", "amqp://u:" + pw + "@host/?cacertfile=/ca.pem", "query", "cacertfile", "", false, "amqps"},
		{"verify on amqp", "amqp://u:" + pw + "@host/?verify=verify_none", "query", "verify", "", false, "amqps"},
		{"bad query escape", "amqp://u:" + pw + "@host/?certfile=%zz", "query", "certfile", "", false, "malformed percent-encoding"},
		{"two path segments", "amqp://u:" + pw + "@host/a/b", "vhost", "", "/a/b", false, "more than one segment"},
		{"trailing slash", "amqp://u:" + pw + "@host/a/", "vhost", "", "/a/", false, "more than one segment"},
		{"double slash", "amqp://u:" + pw + "@host//", "vhost", "", "//", false, "more than one segment"},
		{"malformed vhost escape", "amqp://u:" + pw + "@host/v%2", "vhost", "", "/v%2", false, "malformed percent-encoding"},
		{"malformed vhost escape hex", "amqp://u:" + pw + "@host/v%zzh", "vhost", "", "/v%zzh", false, "malformed percent-encoding"},
		{"vhost too long", "amqp://u:" + pw + "@host/" + strings.Repeat("v", 256), "vhost", "", "", false, "longer than 255"},
		{"malformed password escape", "amqp://u:" + pw + "%zz@host/", "userinfo", "", "", false, "password"},
		{"malformed password escape at end", "amqp://u:" + pw + "%4@host/", "userinfo", "", "", false, "password"},
		{"lone percent in password", "amqp://u:%@host/?heartbeat=" + pw, "userinfo", "", "", false, "password"},
		{"lone percent in vhost", "amqp://u:" + pw + "@host/%", "vhost", "", "/%", false, "malformed percent-encoding"},
		{"lone percent in query", "amqp://u:" + pw + "@host/?heartbeat=1&%", "query", "", "", false, "parameter name"},
		{"malformed username escape", "amqp://u%x:" + pw + "@host/", "userinfo", "", "", false, "username"},
		{"malformed host escape", "amqp://u:" + pw + "@ho%st/", "host", "", "", false, "malformed percent-encoding"},
		{"fragment", "amqp://u:" + pw + "@host/#frag", "uri", "", "", false, "%23"},
		{"space", "amqp://u:" + pw + "@host/ v", "uri", "", "", false, "space or control"},
		{"trailing newline", "amqp://u:" + pw + "@host/\n", "uri", "", "", false, "space or control"},

		// A password with an unescaped delimiter moves the real authority
		// boundary; whatever then fails, the password must not be quoted.
		{"unescaped slash in password", "amqp://u:" + pw + "/x@host/", "port", "", "", true, "percent-encode any '/'"},
		{"unescaped question mark in password", "amqp://u:" + pw + "?x@host/", "port", "", "", true, "not a decimal port number"},
		{"unescaped hash in password", "amqp://u:" + pw + "#x@host/", "uri", "", "", false, "fragment"},
		{"unescaped slash then param", "amqp://u:a/b?" + pw + "=1@host", "port", "", "", true, ""},
		{"unescaped slash in user then param", "amqp://u/?" + pw + "=1@host", "query", "", "", false, "unknown parameter"},
		{"unescaped slash then two segments", "amqp://u/" + pw + "/x:y@host", "vhost", "", "", false, "more than one segment"},
		{"password as unknown parameter value", "amqp://h/?heartbeat=" + pw, "query", "heartbeat", pw, true, ""},
		{"decoded password in parameter", "amqp://u:" + pw + "@host/?heartbeat=" + pw, "query", "", "", true, "seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.Error(t, err)
			require.Equal(t, URI{}, u)

			var ue *URIError
			require.ErrorAs(t, err, &ue)
			require.Equal(t, tt.component, ue.Component)
			require.Equal(t, tt.param, ue.Param)
			require.Equal(t, tt.value, ue.Value)
			require.NotEmpty(t, ue.Reason)

			msg := err.Error()
			require.True(t, strings.HasPrefix(msg, "warren: invalid AMQP URI"), msg)
			if tt.contains != "" {
				require.Contains(t, msg, tt.contains)
			}
			if tt.param != "" {
				require.Contains(t, msg, strconv.Quote(tt.param))
			}

			var ne *strconv.NumError
			require.Equal(t, tt.numErr, errors.As(err, &ne), "wraps *strconv.NumError")
			if tt.numErr {
				require.True(t, errors.Is(err, strconv.ErrSyntax) || errors.Is(err, strconv.ErrRange))
			}

			// The password, whether the URI's own or one that the parser
			// could not find because of a delimiter, is never printed.
			if tt.name != "password as unknown parameter value" {
				require.NotContains(t, msg, pw)
				require.NotContains(t, fmt.Sprintf("%+v %#v", err, err), pw)
				if ue.Err != nil {
					require.NotContains(t, ue.Err.Error(), pw)
				}
			}
		})
	}
}

func TestParseURIStrconvWrapping(t *testing.T) {
	_, err := ParseURI("amqp://host?heartbeat=x")
	require.ErrorIs(t, err, strconv.ErrSyntax)
	_, err = ParseURI("amqp://host?channel_max=99999999999999999999999")
	require.ErrorIs(t, err, strconv.ErrRange)
	_, err = ParseURI("amqp://host:x")
	require.ErrorIs(t, err, strconv.ErrSyntax)
}

func TestURIStringRedacted(t *testing.T) {
	tests := []struct {
		uri  string
		want string
	}{
		{"amqp://", "amqp://guest:xxxxx@localhost:5672/"},
		{"amqp://user:" + uriTestSecret + "@host", "amqp://user:xxxxx@host:5672/"},
		{"amqp://user:@host", "amqp://user:xxxxx@host:5672/"},
		{"amqp://us%40er:" + uriTestSecret + "@host/v%2Fh", "amqp://us%40er:xxxxx@host:5672/v%2Fh"},
		{"amqp://u:" + uriTestSecret + "@[::1]:5673/", "amqp://u:xxxxx@[::1]:5673/"},
		{"amqp://u:" + uriTestSecret + "@[fe80::1%25eth0]/", "amqp://u:xxxxx@[fe80::1%25eth0]:5672/"},
		{"amqps://u:" + uriTestSecret + "@h", "amqps://u:xxxxx@h:5671/"},
		{"amqps://u:" + uriTestSecret + "@h/%2F?heartbeat=0&verify=verify_none&cacertfile=/etc/ca%20file.pem",
			"amqps://u:xxxxx@h:5671/?heartbeat=0&cacertfile=/etc/ca%20file.pem&verify=verify_none"},
		{"amqp://u:" + uriTestSecret + "@h/v?auth_mechanism=plain&auth_mechanism=external&connection_timeout=1500&channel_max=7&frame_max=4096",
			"amqp://u:xxxxx@h:5672/v?connection_timeout=1500&channel_max=7&frame_max=4096&auth_mechanism=PLAIN&auth_mechanism=EXTERNAL"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			u, err := ParseURI(tt.uri)
			require.NoError(t, err)
			require.Equal(t, tt.want, u.String())
			require.Equal(t, tt.want, u.Redacted())

			for _, out := range []string{
				u.String(), u.Redacted(), u.GoString(),
				fmt.Sprint(u), fmt.Sprintf("%v %+v %#v %s", u, u, u, u),
				fmt.Sprintf("%v %+v %#v", &u, &u, &u),
			} {
				require.NotContains(t, out, uriTestSecret)
			}

			// The redacted form parses back to the same URI, except for the password.
			back, err := ParseURI(u.String())
			require.NoError(t, err)
			want := u
			want.Password = "xxxxx"
			require.Equal(t, want, back)
		})
	}
}

func TestURIAddrAndTLS(t *testing.T) {
	tests := []struct {
		u    URI
		addr string
		tls  bool
	}{
		{URI{Scheme: "amqp", Host: "h", Port: 5672}, "h:5672", false},
		{URI{Scheme: "amqps", Host: "::1", Port: 5671}, "[::1]:5671", true},
		{URI{Scheme: "amqps", Host: "10.1.2.3", Port: 1}, "10.1.2.3:1", true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.addr, tt.u.Addr())
		require.Equal(t, tt.tls, tt.u.TLS())
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"amqp://", "amqps://u:p@h:1/v?heartbeat=1&auth_mechanism=plain&verify=verify_none",
		"amqp://[::1]:5673/%2F", "amqp://us%40er:p%3Ass@host/v%2Fh", "amqp://h/a/b",
		"amqp://u:p/x@h", "amqp://h?frame_max=4096&channel_max=1&connection_timeout=9",
		"amqps://h?cacertfile=/a%20b&certfile=c&keyfile=k&server_name_indication=s",
		"amqp://[fe80::1%25eth0]", "amqp://:@/", "amqp://h/%00",
		"Amqps://0?cacertfile=00%000&certfile=0&keyfile=0&%",
		"amqp://[00::%25%20]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			var ue *URIError
			require.ErrorAs(t, err, &ue)
			return
		}
		require.Contains(t, []string{"amqp", "amqps"}, u.Scheme)
		require.True(t, u.Port >= 1 && u.Port <= 65535)
		require.NotEmpty(t, u.Host)
		back, err := ParseURI(u.String())
		require.NoError(t, err, u.String())
		want := u
		want.Password = "xxxxx"
		require.Equal(t, want, back)
	})
}
