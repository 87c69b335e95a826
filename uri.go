package warren

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// URI is a parsed amqp:// or amqps:// URI.
//
// ParseURI implements the RabbitMQ URI specification
// (https://www.rabbitmq.com/docs/uri-spec) and the query parameters of
// https://www.rabbitmq.com/docs/uri-query-parameters, with one deliberate
// deviation concerning the virtual host, shared with amqp091-go and pika:
//
//   - no path ("amqp://host") and the path "/" ("amqp://host/") both select
//     the vhost "/" (the specification says "amqp://host/" selects the empty
//     vhost "", which is almost never what anyone means);
//   - "/%2F" selects "/", "/name" selects "name" and "/a%2Fb" selects "a/b";
//   - a path with more than one unescaped "/" segment ("/a/b", and also "/a/")
//     is an error: a "/" inside a vhost name must be written as %2F.
//
// Userinfo follows the specification: an absent username or password takes
// the default ("guest"), while a present but empty one is empty. So
// "amqp://user@host" has the username "user" and the password "guest", and
// "amqp://user:@host" has the username "user" and an empty password.
//
// A URI never prints its password: String, Redacted and GoString (and
// therefore the %v, %s and %#v verbs of package fmt) replace it with "xxxxx".
type URI struct {
	// Scheme is "amqp" or "amqps" (always lower case).
	Scheme string
	// Host is the percent-decoded host name or IP address, without brackets
	// for IPv6 (an IPv6 zone is kept as "fe80::1%eth0"). An empty host in the
	// URI gives "localhost".
	Host string
	// Port is the TCP port; 5672 for amqp and 5671 for amqps by default.
	Port int
	// Username is the percent-decoded user name; "guest" by default.
	Username string
	// Password is the percent-decoded password; "guest" by default.
	// It is never printed by String, Redacted or GoString, nor included in a
	// *URIError; encoding/json skips it and slog logs the redacted URI.
	Password string `json:"-"`
	// Vhost is the percent-decoded virtual host; "/" by default.
	Vhost string

	// Heartbeat is the heartbeat interval to propose to the server, from the
	// "heartbeat" parameter (whole seconds). It is meaningful only when
	// HasHeartbeat is true; HasHeartbeat distinguishes "heartbeat=0" (disable
	// heartbeats) from a URI without the parameter (use the client default).
	Heartbeat time.Duration
	// HasHeartbeat reports whether the URI had a "heartbeat" parameter.
	HasHeartbeat bool
	// ConnectionTimeout is the TCP connect timeout, from the
	// "connection_timeout" parameter (milliseconds). Zero means the URI did
	// not set one (connection_timeout=0 also gives zero): use the client
	// default.
	ConnectionTimeout time.Duration
	// ChannelMax is the "channel_max" parameter; 0 means no client limit.
	ChannelMax uint16
	// FrameMax is the "frame_max" parameter in bytes; 0 means no client
	// limit. A non-zero value must be at least 4096 (AMQP's frame-min-size).
	FrameMax uint32
	// AuthMechanism lists the SASL mechanisms from the (repeatable)
	// "auth_mechanism" parameter, upper-cased, in the order given: each is
	// one of "PLAIN", "AMQPLAIN" and "EXTERNAL". Nil if none was given.
	AuthMechanism []string

	// CACertFile is the "cacertfile" parameter (amqps only).
	CACertFile string
	// CertFile is the "certfile" parameter (amqps only).
	CertFile string
	// KeyFile is the "keyfile" parameter (amqps only).
	KeyFile string
	// ServerName is the "server_name_indication" parameter (amqps only):
	// the name to send in TLS SNI and verify the certificate against. Empty
	// means Host.
	ServerName string
	// Verify is "verify_peer" or "verify_none", from the "verify" parameter
	// (amqps only). It is "verify_peer" by default for amqps and empty for
	// amqp.
	Verify string
}

// URIError is the error ParseURI returns for a URI it rejects. Its message
// never contains the password: text from the userinfo part of the URI (and
// from anything that might be a mis-delimited part of it) is withheld.
type URIError struct {
	// Component is the part of the URI that is wrong: "uri" (the URI as a
	// whole), "scheme", "userinfo", "host", "port", "vhost" or "query".
	Component string
	// Param is the query parameter's name, when Component is "query" and
	// the name can be shown.
	Param string
	// Value is the offending text (percent-decoded for query values), or
	// empty if there is none or it is withheld because it might contain
	// the password.
	Value string
	// Reason says what is wrong.
	Reason string
	// Err is the underlying error, if any (for example a *strconv.NumError).
	Err error
}

// Error returns a message of the form
// `warren: invalid AMQP URI: query parameter "heartbeat" "x": reason: cause`.
func (e *URIError) Error() string {
	var b strings.Builder
	b.WriteString("warren: invalid AMQP URI")
	switch {
	case e.Param != "":
		fmt.Fprintf(&b, ": query parameter %q", e.Param)
	case e.Component != "":
		b.WriteString(": ")
		b.WriteString(e.Component)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *URIError) Unwrap() error { return e.Err }

const (
	uriDefaultUser     = "guest"
	uriDefaultPassword = "guest"
	uriDefaultVhost    = "/"
	uriDefaultHost     = "localhost"
	uriDefaultPort     = 5672
	uriDefaultTLSPort  = 5671
	uriVerifyPeer      = "verify_peer"
	uriVerifyNone      = "verify_none"
	uriRedacted        = "xxxxx"
	uriFrameMinSize    = 4096
	uriMaxShortStr     = 255
)

// ParseURI parses an amqp:// or amqps:// URI; see URI for the rules and
// defaults. The scheme is case-insensitive.
//
// The query parameters are heartbeat (seconds, 0..65535), connection_timeout
// (milliseconds), channel_max (0..65535), frame_max (0 or 4096..4294967295),
// auth_mechanism (PLAIN, AMQPLAIN or EXTERNAL, case-insensitive, repeatable),
// and, for amqps only, cacertfile, certfile, keyfile, server_name_indication
// and verify (verify_peer or verify_none). Parsing is strict: an unknown
// parameter, a parameter without a value or with an empty value, a
// non-repeatable parameter given twice, a repeated auth_mechanism, a negative
// or out-of-range number and a TLS parameter in an amqp:// URI are all
// errors. Parameter names are case-sensitive. Query names and values are
// percent-decoded; "+" is not a space.
//
// The URI must not contain spaces, control characters or a fragment ("#"):
// percent-encode such characters in the password. Errors are of type
// *URIError and never contain the password.
func ParseURI(s string) (URI, error) {
	p := uriParser{s: s}
	u, err := p.parse()
	if err != nil {
		return URI{}, err
	}
	return u, nil
}

// uriParser holds the state of one ParseURI call.
type uriParser struct {
	s string
	// [secretLo, secretHi) is the part of s that may hold the password:
	// from the start of the authority to the last '@' in s. Nothing in it
	// is ever quoted in an error.
	secretLo, secretHi int
	password           string // decoded password, once known
}

// fail builds a *URIError, quoting s[lo:hi] (or value, if non-empty and the
// span is safe) only if that span cannot contain the password.
func (p *uriParser) fail(component, param string, lo, hi int, value, reason string, err error) *URIError {
	e := &URIError{Component: component, Param: param, Reason: reason, Err: err}
	if !p.safe(lo, hi) || (p.password != "" && (strings.Contains(value, p.password) || strings.Contains(param, p.password))) {
		// Withhold everything derived from the input text.
		e.Param = ""
		e.Reason += " (text withheld: it may contain the password; percent-encode any '/', '?' or '#' in the password)"
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			e.Err = &strconv.NumError{Func: ne.Func, Num: uriRedacted, Err: ne.Err}
		}
		return e
	}
	e.Value = value
	return e
}

// safe reports whether s[lo:hi] lies outside the region that may hold the
// password.
func (p *uriParser) safe(lo, hi int) bool {
	if p.secretHi <= p.secretLo {
		return true
	}
	return hi <= p.secretLo || lo >= p.secretHi
}

func (p *uriParser) parse() (URI, error) {
	s := p.s
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return URI{}, &URIError{Component: "uri", Reason: fmt.Sprintf(
				"space or control character at byte offset %d; percent-encode it", i)}
		}
		if s[i] == '#' {
			return URI{}, &URIError{Component: "uri", Reason: fmt.Sprintf(
				"'#' at byte offset %d: fragments are not supported; percent-encode '#' as %%23", i)}
		}
	}

	// Scheme.
	i := strings.Index(s, "://")
	if i <= 0 {
		return URI{}, &URIError{Component: "scheme", Reason: "missing scheme: the URI must start with amqp:// or amqps://"}
	}
	scheme := s[:i]
	u := URI{
		Username: uriDefaultUser,
		Password: uriDefaultPassword,
		Vhost:    uriDefaultVhost,
	}
	switch strings.ToLower(scheme) {
	case "amqp":
		u.Scheme, u.Port = "amqp", uriDefaultPort
	case "amqps":
		u.Scheme, u.Port, u.Verify = "amqps", uriDefaultTLSPort, uriVerifyPeer
	default:
		e := &URIError{Component: "scheme", Reason: "unsupported scheme; use amqp or amqps"}
		if uriValidScheme(scheme) {
			e.Value = scheme
		}
		return URI{}, e
	}

	authLo := i + len("://")
	p.secretLo = authLo
	if at := strings.LastIndexByte(s, '@'); at > authLo {
		p.secretHi = at
	}
	authHi := len(s)
	if j := strings.IndexAny(s[authLo:], "/?"); j >= 0 {
		authHi = authLo + j
	}

	// Userinfo.
	hostLo := authLo
	if at := strings.LastIndexByte(s[authLo:authHi], '@'); at >= 0 {
		userinfo := s[authLo : authLo+at]
		hostLo = authLo + at + 1
		rawUser, rawPass, hasPass := strings.Cut(userinfo, ":")
		user, ok := uriUnescape(rawUser)
		if !ok {
			return URI{}, p.fail("userinfo", "", authLo, hostLo, "",
				"malformed percent-encoding in username (% must be followed by two hex digits)", nil)
		}
		u.Username = user
		if hasPass {
			pass, ok := uriUnescape(rawPass)
			if !ok {
				return URI{}, p.fail("userinfo", "", authLo, hostLo, "",
					"malformed percent-encoding in password (% must be followed by two hex digits)", nil)
			}
			u.Password = pass
			p.password = pass
		}
	}

	// Host and port.
	if err := p.parseHostPort(&u, hostLo, authHi); err != nil {
		return URI{}, err
	}

	// Path (vhost).
	pathHi := len(s)
	if j := strings.IndexByte(s[authHi:], '?'); j >= 0 {
		pathHi = authHi + j
	}
	if err := p.parseVhost(&u, authHi, pathHi); err != nil {
		return URI{}, err
	}

	// Query.
	if pathHi < len(s) {
		if err := p.parseQuery(&u, pathHi+1); err != nil {
			return URI{}, err
		}
	}
	return u, nil
}

func (p *uriParser) parseHostPort(u *URI, lo, hi int) error {
	s := p.s
	hp := s[lo:hi]
	var rawHost, rawPort string
	var hostLo, hostHi, portLo int
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return p.fail("host", "", lo, hi, hp, "missing ']' after IPv6 address", nil)
		}
		hostLo, hostHi = lo+1, lo+end
		rawHost = s[hostLo:hostHi]
		rest := hp[end+1:]
		switch {
		case rest == "":
		case rest[0] == ':':
			rawPort, portLo = rest[1:], lo+end+2
		default:
			return p.fail("host", "", lo, hi, hp, "unexpected characters after ']'", nil)
		}
		host, ok := uriUnescape(rawHost)
		if !ok {
			return p.fail("host", "", hostLo, hostHi, "", "malformed percent-encoding (% must be followed by two hex digits)", nil)
		}
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() {
			return p.fail("host", "", hostLo, hostHi, host, "invalid IPv6 address in brackets", nil)
		}
		u.Host = host
	} else {
		hostLo, hostHi = lo, hi
		if c := strings.LastIndexByte(hp, ':'); c >= 0 {
			hostHi = lo + c
			rawPort, portLo = hp[c+1:], lo+c+1
		}
		rawHost = s[hostLo:hostHi]
		if strings.ContainsRune(rawHost, ':') {
			return p.fail("host", "", lo, hi, hp, "an IPv6 address must be enclosed in brackets, as in amqp://[::1]:5672/", nil)
		}
		host, ok := uriUnescape(rawHost)
		if !ok {
			return p.fail("host", "", hostLo, hostHi, "", "malformed percent-encoding (% must be followed by two hex digits)", nil)
		}
		if strings.ContainsAny(host, " /?#@[]:\\") || strings.ContainsFunc(host, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return p.fail("host", "", hostLo, hostHi, host, "invalid character in host name", nil)
		}
		if host == "" {
			host = uriDefaultHost
		}
		u.Host = host
	}

	if rawPort == "" { // absent or empty: the scheme's default
		return nil
	}
	portHi := portLo + len(rawPort)
	if strings.HasPrefix(rawPort, "-") {
		return p.fail("port", "", portLo, portHi, rawPort, "must be between 1 and 65535", nil)
	}
	n, err := strconv.ParseUint(rawPort, 10, 32)
	if err != nil {
		reason := "not a decimal port number"
		if errors.Is(err, strconv.ErrRange) {
			reason = "out of range: must be between 1 and 65535"
		}
		return p.fail("port", "", portLo, portHi, rawPort, reason, err)
	}
	if n < 1 || n > math.MaxUint16 {
		return p.fail("port", "", portLo, portHi, rawPort, "out of range: must be between 1 and 65535", nil)
	}
	u.Port = int(n)
	return nil
}

func (p *uriParser) parseVhost(u *URI, lo, hi int) error {
	path := p.s[lo:hi]
	if path == "" || path == "/" {
		u.Vhost = uriDefaultVhost
		return nil
	}
	seg := path[1:] // path starts with '/': the authority ends at '/' or '?'
	if strings.ContainsRune(seg, '/') {
		return p.fail("vhost", "", lo, hi, path,
			"the path has more than one segment; percent-encode '/' inside the vhost name as %2F", nil)
	}
	vhost, ok := uriUnescape(seg)
	if !ok {
		return p.fail("vhost", "", lo, hi, path, "malformed percent-encoding (% must be followed by two hex digits)", nil)
	}
	if len(vhost) > uriMaxShortStr {
		return p.fail("vhost", "", lo, hi, "", fmt.Sprintf("longer than %d bytes", uriMaxShortStr), nil)
	}
	u.Vhost = vhost
	return nil
}

// uriTLSParams are the query parameters that only apply to amqps.
var uriTLSParams = map[string]bool{
	"cacertfile":             true,
	"certfile":               true,
	"keyfile":                true,
	"server_name_indication": true,
	"verify":                 true,
}

func (p *uriParser) parseQuery(u *URI, lo int) error {
	s := p.s
	seen := make(map[string]bool)
	for lo <= len(s) {
		hi := len(s)
		if j := strings.IndexByte(s[lo:], '&'); j >= 0 {
			hi = lo + j
		}
		if err := p.parseParam(u, lo, hi, seen); err != nil {
			return err
		}
		lo = hi + 1
	}
	return nil
}

func (p *uriParser) parseParam(u *URI, lo, hi int, seen map[string]bool) error {
	s := p.s
	if lo == hi { // empty piece, as in "?a=1&&b=2" or a trailing '&'
		return nil
	}
	rawName, rawValue, hasValue := strings.Cut(s[lo:hi], "=")
	nameHi := lo + len(rawName)
	name, ok := uriUnescape(rawName)
	if !ok {
		return p.fail("query", "", lo, nameHi, "", "malformed percent-encoding in a parameter name (% must be followed by two hex digits)", nil)
	}
	if !p.safe(lo, nameHi) {
		name = "" // never quote text that may hold the password
	}
	if !hasValue {
		return p.fail("query", name, lo, hi, "", "missing '=' and value", nil)
	}
	valLo := nameHi + 1
	value, ok := uriUnescape(rawValue)
	if !ok {
		return p.fail("query", name, lo, hi, "", "malformed percent-encoding in value (% must be followed by two hex digits)", nil)
	}
	bad := func(reason string, err error) error {
		return p.fail("query", name, valLo, hi, value, reason, err)
	}

	switch name {
	case "heartbeat", "connection_timeout", "channel_max", "frame_max",
		"auth_mechanism", "cacertfile", "certfile", "keyfile", "server_name_indication", "verify":
	default:
		return p.fail("query", name, lo, nameHi, "", "unknown parameter", nil)
	}
	if uriTLSParams[name] && u.Scheme != "amqps" {
		return p.fail("query", name, lo, nameHi, "", "only valid with the amqps scheme", nil)
	}
	if name != "auth_mechanism" {
		if seen[name] {
			return p.fail("query", name, lo, nameHi, "", "given more than once", nil)
		}
		seen[name] = true
	}
	if value == "" {
		return bad("empty value", nil)
	}

	switch name {
	case "heartbeat":
		n, err := uriParseUint(value, math.MaxUint16)
		if err != nil {
			return bad("must be a whole number of seconds between 0 and 65535", err)
		}
		u.Heartbeat, u.HasHeartbeat = time.Duration(n)*time.Second, true
	case "connection_timeout":
		n, err := uriParseUint(value, uint64(math.MaxInt64/int64(time.Millisecond)))
		if err != nil {
			return bad("must be a non-negative whole number of milliseconds", err)
		}
		u.ConnectionTimeout = time.Duration(n) * time.Millisecond
	case "channel_max":
		n, err := uriParseUint(value, math.MaxUint16)
		if err != nil {
			return bad("must be a whole number between 0 and 65535", err)
		}
		u.ChannelMax = uint16(n)
	case "frame_max":
		n, err := uriParseUint(value, math.MaxUint32)
		if err == nil && n != 0 && n < uriFrameMinSize {
			err = errors.New("below the AMQP minimum frame size")
		}
		if err != nil {
			return bad("must be 0 (no limit) or a whole number of bytes between 4096 and 4294967295", err)
		}
		u.FrameMax = uint32(n)
	case "auth_mechanism":
		mech := strings.ToUpper(value)
		switch mech {
		case "PLAIN", "AMQPLAIN", "EXTERNAL":
		default:
			return bad("unknown SASL mechanism: must be PLAIN, AMQPLAIN or EXTERNAL", nil)
		}
		for _, m := range u.AuthMechanism {
			if m == mech {
				return bad("mechanism given more than once", nil)
			}
		}
		u.AuthMechanism = append(u.AuthMechanism, mech)
	case "cacertfile":
		u.CACertFile = value
	case "certfile":
		u.CertFile = value
	case "keyfile":
		u.KeyFile = value
	case "server_name_indication":
		u.ServerName = value
	case "verify":
		if value != uriVerifyPeer && value != uriVerifyNone {
			return bad("must be verify_peer or verify_none", nil)
		}
		u.Verify = value
	}
	return nil
}

// uriParseUint parses a non-negative decimal integer no greater than limit.
// Errors from strconv are returned as they are, for wrapping.
func uriParseUint(v string, limit uint64) (uint64, error) {
	if strings.HasPrefix(v, "-") {
		return 0, errors.New("negative")
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > limit {
		return 0, fmt.Errorf("greater than %d", limit)
	}
	return n, nil
}

// uriValidScheme reports whether s has the syntax of an RFC 3986 scheme.
func uriValidScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// uriUnescape percent-decodes s. Unlike url.QueryUnescape it leaves '+'
// alone, and unlike net/url its failure carries no text from s.
func uriUnescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := uriUnhex(s[i+1])
		lo, ok2 := uriUnhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func uriUnhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// uriEscape percent-encodes every byte of s except RFC 3986 unreserved
// characters and the bytes in keep.
func uriEscape(s, keep string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// String re-serialises u as a URI that ParseURI accepts, with the password
// replaced by "xxxxx" (whatever the password, even an empty one). Query
// parameters are written only when they differ from the defaults, in a fixed
// order; the default vhost "/" is written as a trailing "/".
func (u URI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	b.WriteString(uriEscape(u.Username, ""))
	b.WriteString(":" + uriRedacted + "@")
	if strings.ContainsRune(u.Host, ':') {
		b.WriteString("[" + uriEscape(u.Host, ":") + "]") // a zone's '%' becomes %25
	} else {
		b.WriteString(uriEscape(u.Host, ""))
	}
	b.WriteString(":" + strconv.Itoa(u.Port) + "/")
	if u.Vhost != uriDefaultVhost {
		b.WriteString(uriEscape(u.Vhost, ""))
	}

	sep := byte('?')
	add := func(name, value string) {
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(name + "=" + uriEscape(value, "/:"))
	}
	if u.HasHeartbeat {
		add("heartbeat", strconv.FormatInt(int64(u.Heartbeat/time.Second), 10))
	}
	if u.ConnectionTimeout != 0 {
		add("connection_timeout", strconv.FormatInt(u.ConnectionTimeout.Milliseconds(), 10))
	}
	if u.ChannelMax != 0 {
		add("channel_max", strconv.FormatUint(uint64(u.ChannelMax), 10))
	}
	if u.FrameMax != 0 {
		add("frame_max", strconv.FormatUint(uint64(u.FrameMax), 10))
	}
	for _, m := range u.AuthMechanism {
		add("auth_mechanism", m)
	}
	if u.CACertFile != "" {
		add("cacertfile", u.CACertFile)
	}
	if u.CertFile != "" {
		add("certfile", u.CertFile)
	}
	if u.KeyFile != "" {
		add("keyfile", u.KeyFile)
	}
	if u.ServerName != "" {
		add("server_name_indication", u.ServerName)
	}
	if u.Verify != "" && !(u.Scheme == "amqps" && u.Verify == uriVerifyPeer) {
		add("verify", u.Verify)
	}
	return b.String()
}

// Redacted is the same as String: the URI with the password replaced by
// "xxxxx". It exists for symmetry with net/url.URL.Redacted.
func (u URI) Redacted() string { return u.String() }

// LogValue makes log/slog record the redacted URI, never the password.
func (u URI) LogValue() slog.Value { return slog.StringValue(u.String()) }

// GoString implements fmt.GoStringer so that %#v does not print the
// password either.
func (u URI) GoString() string { return fmt.Sprintf("warren.URI(%q)", u.String()) }

// Addr returns the "host:port" address to dial, with an IPv6 host in
// brackets.
func (u URI) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// TLS reports whether the URI asks for TLS (the amqps scheme).
func (u URI) TLS() bool { return u.Scheme == "amqps" }
