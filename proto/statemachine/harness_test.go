package statemachine

// A scripted broker for the sans-IO client machine, in the style of
// x/net/quic's testConn: the test plays the server, writing frames into the
// machine and asserting what the machine writes back and which events it
// reports, on a simulated clock.
//
// The harness behaves like a well-behaved driver: after every chunk it feeds
// it drains NextEvent (keeping owned copies of every event) and
// AppendOutbound, and it calls HandleTimeout whenever Deadline has passed on
// the simulated clock. Every server byte stream can be fed whole, one byte
// at a time, or in random splits (h11's approach), or in random splits
// handed over as a pooling driver does (Adopt, ReadBuffer and Received,
// ReleaseInput and ReleaseOutbound, with every released buffer scribbled
// over and reused); testAllModes runs a scenario in every mode and checks
// that the machine reported the same events.
//
// It also checks the request tokens: the requests made through call (or
// registered with track) must be answered by EventReply in request order
// per channel, each token exactly once, and all of them by the time the
// connection reports EventClosed.

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// feedMode says how the harness splits what the server writes into Feed
// calls.
type feedMode uint8

const (
	feedWhole  feedMode = iota // every write in one Feed call
	feedBytes                  // one byte per Feed call
	feedRandom                 // random splits
	feedAdopt                  // random splits, through Adopt or ReadBuffer, buffers released and reused
)

var feedModes = []feedMode{feedWhole, feedBytes, feedRandom, feedAdopt}

func (m feedMode) String() string {
	return [...]string{"whole", "bytes", "random", "adopt"}[m]
}

// testStart is the simulated clock's epoch.
var testStart = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type testConn struct {
	t    testing.TB
	conn *Conn
	cfg  Config // as given (before defaults)

	now  time.Time
	mode feedMode
	rng  *rand.Rand

	out    []byte  // outbound bytes not yet consumed by want*
	events []Event // owned copies of events not yet consumed by wantEvent
	log    []Event // owned copies of every event reported, in order
	feeds  int     // Feed calls made

	tokens   map[uint16][]Token // tracked requests awaiting their EventReply, per channel, oldest first
	issued   []Token            // every tracked token
	answered map[Token]int      // EventReply count per token

	pool     [][]byte // feedAdopt: released input buffers, reused by later reads
	adopted  int      // feedAdopt: reads handed over with Adopt
	received int      // feedAdopt: reads into ReadBuffer
	released int      // feedAdopt: input buffers ReleaseInput gave back
}

type testConnOption func(*testConn)

// withFeedMode sets how server bytes are split into Feed calls.
func withFeedMode(m feedMode) testConnOption { return func(tc *testConn) { tc.mode = m } }

// withSeed seeds the random splits.
func withSeed(seed uint64) testConnOption {
	return func(tc *testConn) { tc.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// testConfig is a Config for tests: PLAIN guest/guest and no heartbeats
// unless the server asks for them.
func testConfig() Config {
	return Config{Auth: []Authenticator{PlainAuth{Username: "guest", Password: "guest"}}, Heartbeat: -1}
}

// newTestConn returns a started machine for cfg and consumes the protocol
// header it writes first.
func newTestConn(t testing.TB, cfg Config, opts ...testConnOption) *testConn {
	t.Helper()
	c, err := NewConn(cfg)
	require.NoError(t, err)
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	seed := h.Sum64()
	tc := &testConn{t: t, conn: c, cfg: cfg, now: testStart, rng: rand.New(rand.NewPCG(seed, 1)),
		tokens: map[uint16][]Token{}, answered: map[Token]int{}}
	for _, o := range opts {
		o(tc)
	}
	require.Equal(t, StateNew, c.State())
	require.True(t, c.Deadline().IsZero(), "a new machine needs no timer")
	c.Start(tc.now)
	tc.pump()
	require.GreaterOrEqual(t, len(tc.out), len(frames.ProtocolHeader), "no protocol header written")
	require.Equal(t, frames.ProtocolHeader, string(tc.out[:len(frames.ProtocolHeader)]))
	tc.out = tc.out[len(frames.ProtocolHeader):]
	require.Equal(t, StateAwaitStart, c.State())
	return tc
}

// pump does what a driver does after every input: drain events, collect
// outbound bytes, and run HandleTimeout while Deadline has passed.
func (tc *testConn) pump() {
	tc.t.Helper()
	for i := 0; ; i++ {
		if i == 1000 {
			tc.t.Fatalf("the machine keeps asking for HandleTimeout at %v", tc.now)
		}
		for {
			e := tc.conn.NextEvent()
			if e.Kind == EventNone {
				break
			}
			e = cloneEvent(e)
			tc.checkToken(e)
			tc.events = append(tc.events, e)
			tc.log = append(tc.log, e)
		}
		if tc.mode == feedAdopt {
			tc.releaseInput()
		}
		tc.out = tc.conn.AppendOutbound(tc.out)
		if n := tc.conn.OutboundLen(); n != 0 {
			tc.t.Fatalf("AppendOutbound left %d bytes behind", n)
		}
		if tc.mode == feedAdopt {
			if b := tc.conn.ReleaseOutbound(); b != nil {
				require.Empty(tc.t, b, "ReleaseOutbound returned pending bytes")
				scribble(b)
			}
			require.Nil(tc.t, tc.conn.ReleaseOutbound(), "the outbound buffer released twice")
		}
		dl := tc.conn.Deadline()
		if dl.IsZero() || dl.After(tc.now) {
			return
		}
		tc.conn.HandleTimeout(tc.now)
	}
}

// checkToken checks an event against the tracked requests: a reply must
// answer the oldest tracked request of its channel, once; EventClosed
// comes after every tracked request was answered.
func (tc *testConn) checkToken(e Event) {
	tc.t.Helper()
	switch e.Kind {
	case EventReply:
		require.NotZero(tc.t, e.Token, "EventReply without a token: %+v", e)
		tc.answered[e.Token]++
		require.Equal(tc.t, 1, tc.answered[e.Token], "token %d answered twice", e.Token)
		if e.Method == nil {
			require.Error(tc.t, e.Err, "EventReply with neither a method nor an error")
		} else if e.Err == nil {
			require.True(tc.t, frames.AcceptsReply(e.Request, e.Method.Key()), "%s answers %s", e.Method.Key(), e.Request)
		}
		if toks := tc.tokens[e.Channel]; len(toks) > 0 {
			require.Equal(tc.t, toks[0], e.Token, "reply on channel %d to %s answers the wrong request", e.Channel, e.Request)
			tc.tokens[e.Channel] = toks[1:]
		}
	case EventChannelClosed:
		require.Empty(tc.t, tc.tokens[e.Channel], "channel %d closed with requests unanswered", e.Channel)
		require.Len(tc.t, e.Publishes, e.Unconfirmed)
	case EventClosed:
		for _, tok := range tc.issued {
			require.Equal(tc.t, 1, tc.answered[tok], "token %d not answered before EventClosed", tok)
		}
	}
}

// track registers the token of a request made on channel ch outside call.
func (tc *testConn) track(ch uint16, tok Token) {
	tc.t.Helper()
	require.NotZero(tc.t, tok, "a request without a token")
	for _, t := range tc.issued {
		require.NotEqual(tc.t, t, tok, "token %d handed out twice", tok)
	}
	tc.tokens[ch] = append(tc.tokens[ch], tok)
	tc.issued = append(tc.issued, tok)
}

// releaseInput does what a pooling driver does once the events are
// drained: it takes the machine's input buffer back unless a partial
// frame is buffered, scribbles over it (so that any view the machine kept
// into it shows) and pools it for the next read.
func (tc *testConn) releaseInput() {
	tc.t.Helper()
	had := tc.conn.HasInput()
	b := tc.conn.ReleaseInput()
	if had {
		require.Nil(tc.t, b, "ReleaseInput gave back a buffer holding unparsed input")
		return
	}
	if b == nil {
		return
	}
	require.Empty(tc.t, b, "ReleaseInput gave back a non-empty buffer")
	require.Nil(tc.t, tc.conn.ReleaseInput(), "the input buffer released twice")
	scribble(b)
	tc.pool = append(tc.pool, b)
	tc.released++
}

// scribble overwrites a released buffer's whole capacity.
func scribble(b []byte) {
	b = b[:cap(b)]
	for i := range b {
		b[i] = 0x5A
	}
}

// adopt hands chunk to the machine as a pooling driver does: into a pooled
// buffer and Adopt when no partial frame is buffered, else into
// ReadBuffer and Received.
func (tc *testConn) adopt(chunk []byte) error {
	if tc.conn.HasInput() {
		tc.received++
		buf := tc.conn.ReadBuffer(len(chunk))
		require.GreaterOrEqual(tc.t, len(buf), len(chunk))
		return tc.conn.Received(copy(buf, chunk))
	}
	tc.adopted++
	var buf []byte
	if n := len(tc.pool); n > 0 {
		buf, tc.pool = tc.pool[n-1], tc.pool[:n-1]
	}
	return tc.conn.Adopt(append(buf[:0], chunk...))
}

// cloneEvent copies the byte slices and Publishes an event borrows from
// the machine.
func cloneEvent(e Event) Event {
	e.Message = cloneMessage(e.Message)
	e.Publishes = slices.Clone(e.Publishes)
	return e
}

func cloneMessage(m Message) Message {
	if len(m.Body) == 0 {
		m.Body = nil
	} else {
		m.Body = bytes.Clone(m.Body)
	}
	p := &m.Properties
	for _, b := range []*[]byte{&p.ContentType, &p.ContentEncoding, &p.CorrelationID, &p.ReplyTo, &p.Expiration,
		&p.MessageID, &p.Type, &p.UserID, &p.AppID, &p.ClusterID} {
		*b = bytes.Clone(*b)
	}
	p.Headers = bytes.Clone(p.Headers)
	return m
}

// split cuts b into the chunks of one write, according to the feed mode.
func (tc *testConn) split(b []byte) [][]byte {
	switch tc.mode {
	case feedBytes:
		chunks := make([][]byte, len(b))
		for i := range b {
			chunks[i] = b[i : i+1]
		}
		return chunks
	case feedRandom, feedAdopt:
		var chunks [][]byte
		for len(b) > 0 {
			n := 1 + tc.rng.IntN(min(len(b), 64))
			if tc.rng.IntN(8) == 0 {
				n = 1 + tc.rng.IntN(len(b)) // now and then a long chunk
			}
			chunks = append(chunks, b[:n])
			b = b[n:]
		}
		return chunks
	}
	return [][]byte{b}
}

// writeRaw feeds b, as the server's next bytes, in the current feed mode.
func (tc *testConn) writeRaw(b []byte) {
	tc.t.Helper()
	for _, chunk := range tc.split(b) {
		if tc.mode == feedAdopt {
			if err := tc.adopt(chunk); err != nil {
				tc.t.Fatalf("Adopt or Received: %v", err)
			}
			tc.feeds++
			tc.pump()
			continue
		}
		// Feed copies: make sure it does by handing it a scratch copy
		// that is overwritten right after.
		scratch := bytes.Clone(chunk)
		if err := tc.conn.Feed(scratch); err != nil {
			tc.t.Fatalf("Feed: %v", err)
		}
		for i := range scratch {
			scratch[i] = 0xA5
		}
		tc.feeds++
		tc.pump()
	}
}

// writeFrame feeds one frame.
func (tc *testConn) writeFrame(typ frames.FrameType, ch uint16, payload []byte) {
	tc.t.Helper()
	tc.writeRaw(rawFrame(typ, ch, payload))
}

// rawFrame builds a frame by hand (any type, size and payload).
func rawFrame(typ frames.FrameType, ch uint16, payload []byte) []byte {
	b := []byte{byte(typ), byte(ch >> 8), byte(ch), 0, 0, 0, 0}
	n := len(payload)
	b[3], b[4], b[5], b[6] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	b = append(b, payload...)
	return append(b, frames.FrameEndOctet)
}

// methodFrame encodes m as a method frame.
func methodFrame(t testing.TB, ch uint16, m frames.Method) []byte {
	t.Helper()
	b, err := frames.AppendMethod(nil, ch, m)
	require.NoError(t, err)
	return b
}

// headerFrame encodes a content header frame.
func headerFrame(t testing.TB, ch uint16, size uint64, p *proto.Properties) []byte {
	t.Helper()
	b, err := frames.AppendContentHeader(nil, ch, size, p)
	require.NoError(t, err)
	return b
}

// writeMethod feeds method m on channel ch.
func (tc *testConn) writeMethod(ch uint16, m frames.Method) {
	tc.t.Helper()
	tc.writeRaw(methodFrame(tc.t, ch, m))
}

// writeContent feeds a content-carrying method with its header and body
// frames, the body cut at the negotiated frame_max.
func (tc *testConn) writeContent(ch uint16, m frames.Method, p *proto.Properties, body []byte) {
	tc.t.Helper()
	b, err := frames.AppendMessage(nil, ch, m, p, body, tc.conn.Tuning().FrameMax)
	require.NoError(tc.t, err)
	tc.writeRaw(b)
}

// writeContentFrames feeds a content-carrying method, its header and its
// body in frames of at most chunk bytes, each frame in its own write (so
// the machine compacts its input between them).
func (tc *testConn) writeContentFrames(ch uint16, m frames.Method, p *proto.Properties, body []byte, chunk int) {
	tc.t.Helper()
	tc.writeMethod(ch, m)
	tc.writeRaw(headerFrame(tc.t, ch, uint64(len(body)), p))
	for len(body) > 0 {
		n := min(chunk, len(body))
		tc.writeFrame(frames.FrameBody, ch, body[:n])
		body = body[n:]
	}
}

// writeHeartbeat feeds a heartbeat frame.
func (tc *testConn) writeHeartbeat() {
	tc.t.Helper()
	tc.writeRaw(frames.AppendHeartbeat(nil))
}

// writeEOF tells the machine the server closed the stream.
func (tc *testConn) writeEOF() {
	tc.t.Helper()
	tc.conn.FeedEOF()
	tc.pump()
}

// advance moves the simulated clock by d, calling HandleTimeout when the
// machine's deadline has passed.
func (tc *testConn) advance(d time.Duration) {
	tc.t.Helper()
	tc.now = tc.now.Add(d)
	tc.pump()
}

// nextFrame takes the next outbound frame; ok is false when there is none.
func (tc *testConn) nextFrame() (f frames.Frame, ok bool) {
	tc.t.Helper()
	tc.pump()
	if len(tc.out) == 0 {
		return frames.Frame{}, false
	}
	f, n, err := frames.ReadFrame(tc.out, 0)
	require.NoError(tc.t, err, "the client wrote a malformed frame")
	require.NotZero(tc.t, n, "the client wrote a partial frame: % x", tc.out)
	f.Payload = bytes.Clone(f.Payload)
	tc.out = tc.out[n:]
	return f, true
}

// readMethod takes the next outbound frame, which must be a method frame
// on channel ch, and decodes it.
func (tc *testConn) readMethod(ch uint16) frames.Method {
	tc.t.Helper()
	f, ok := tc.nextFrame()
	require.True(tc.t, ok, "the client wrote nothing; want a method on channel %d", ch)
	require.Equal(tc.t, frames.FrameMethod, f.Type, "want a method frame on channel %d", ch)
	m, err := frames.DecodeMethod(f.Channel, f.Payload)
	require.NoError(tc.t, err)
	require.Equal(tc.t, ch, f.Channel, "%s written on the wrong channel", m.Key())
	return m
}

// wantMethod asserts that the client wrote exactly want on channel ch next.
func (tc *testConn) wantMethod(ch uint16, want frames.Method) {
	tc.t.Helper()
	got := tc.readMethod(ch)
	require.Equal(tc.t, want, got, "client wrote %s, want %s", got.Key(), want.Key())
}

// wantConnectionClose asserts that the client wrote connection.close with
// code next, and returns it.
func (tc *testConn) wantConnectionClose(code proto.ReplyCode) *frames.ConnectionClose {
	tc.t.Helper()
	m := tc.readMethod(0)
	cl, ok := m.(*frames.ConnectionClose)
	require.True(tc.t, ok, "client wrote %s, want connection.close", m.Key())
	require.Equal(tc.t, uint16(code), cl.ReplyCode, "connection.close %q", cl.ReplyText)
	return cl
}

// wantContent asserts that the client wrote m with a content header for
// properties p and the body, in body frames within frame_max.
func (tc *testConn) wantContent(ch uint16, m frames.Method, p *proto.Properties, body []byte) {
	tc.t.Helper()
	tc.wantMethod(ch, m)
	f, ok := tc.nextFrame()
	require.True(tc.t, ok, "no content header after %s", m.Key())
	require.Equal(tc.t, frames.FrameHeader, f.Type)
	require.Equal(tc.t, ch, f.Channel)
	want := headerFrame(tc.t, ch, uint64(len(body)), p)
	require.Equal(tc.t, want[frames.FrameHeaderSize:len(want)-1], f.Payload, "content header")
	var got []byte
	for len(got) < len(body) {
		f, ok := tc.nextFrame()
		require.True(tc.t, ok, "body incomplete: %d of %d bytes", len(got), len(body))
		require.Equal(tc.t, frames.FrameBody, f.Type)
		require.Equal(tc.t, ch, f.Channel)
		require.NotEmpty(tc.t, f.Payload, "empty body frame")
		if fm := tc.conn.Tuning().FrameMax; fm != 0 {
			require.LessOrEqual(tc.t, len(f.Payload)+frames.FrameOverhead, int(fm), "body frame over frame_max")
		}
		got = append(got, f.Payload...)
	}
	require.Equal(tc.t, body, got, "body")
}

// wantHeartbeat asserts that the client wrote a heartbeat frame next.
func (tc *testConn) wantHeartbeat() {
	tc.t.Helper()
	f, ok := tc.nextFrame()
	require.True(tc.t, ok, "the client wrote nothing; want a heartbeat")
	require.Equal(tc.t, frames.FrameHeartbeat, f.Type, "want a heartbeat, got %s on channel %d", f.Type, f.Channel)
}

// wantEvent asserts that the next event has the given kind and returns it.
func (tc *testConn) wantEvent(kind EventKind) Event {
	tc.t.Helper()
	tc.pump()
	require.NotEmpty(tc.t, tc.events, "no event; want %s", kind)
	e := tc.events[0]
	tc.events = tc.events[1:]
	require.Equal(tc.t, kind, e.Kind, "got event %s, want %s: %+v", e.Kind, kind, e)
	return e
}

// wantNoEvent asserts that no event is waiting.
func (tc *testConn) wantNoEvent() {
	tc.t.Helper()
	tc.pump()
	require.Empty(tc.t, tc.events, "unexpected events: %s", describeEvents(tc.events))
}

// wantIdle asserts that the client wrote nothing and reported nothing.
func (tc *testConn) wantIdle() {
	tc.t.Helper()
	tc.pump()
	require.Empty(tc.t, tc.events, "unexpected events: %s", describeEvents(tc.events))
	require.Empty(tc.t, tc.out, "unexpected outbound bytes: %s", describeFrames(tc.out))
}

// wantClosed asserts that the connection reported EventClosed (after the
// channels' EventChannelClosed and the failed requests' EventReply, which
// it skips) and returns its error.
func (tc *testConn) wantClosed() error {
	tc.t.Helper()
	tc.pump()
	for len(tc.events) > 0 && (tc.events[0].Kind == EventChannelClosed || tc.events[0].Kind == EventReply && tc.events[0].Method == nil) {
		tc.events = tc.events[1:]
	}
	e := tc.wantEvent(EventClosed)
	require.Equal(tc.t, StateClosed, tc.conn.State())
	return e.Err
}

func describeEvents(evs []Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%s(ch %d, err %v)", e.Kind, e.Channel, e.Err))
	}
	return strings.Join(s, ", ")
}

func describeFrames(b []byte) string {
	var s []string
	for len(b) > 0 {
		f, n, err := frames.ReadFrame(b, 0)
		if err != nil || n == 0 {
			s = append(s, fmt.Sprintf("% x", b))
			break
		}
		desc := f.Type.String()
		if f.Type == frames.FrameMethod {
			if m, err := frames.DecodeMethod(f.Channel, f.Payload); err == nil {
				desc = fmt.Sprintf("%s %+v", m.Key(), m)
			}
		}
		s = append(s, fmt.Sprintf("ch%d %s", f.Channel, desc))
		b = b[n:]
	}
	return strings.Join(s, "; ")
}

// serverStart is the connection.start a RabbitMQ-like server sends.
func serverStart(mechanisms string) *frames.ConnectionStart {
	return &frames.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: proto.Table{
			{Name: "product", Value: proto.String("RabbitMQ")},
			{Name: "version", Value: proto.String("3.10.8")},
		},
		Mechanisms: mechanisms,
		Locales:    "en_US",
	}
}

// handshakeSpec says how the scripted server conducts the handshake.
type handshakeSpec struct {
	mechanisms string                // connection.start mechanisms
	tune       frames.ConnectionTune // the server's proposal
}

func defaultHandshake() handshakeSpec {
	return handshakeSpec{
		mechanisms: "PLAIN AMQPLAIN",
		tune:       frames.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 0},
	}
}

// handshake plays the server side of a successful handshake: start (PLAIN
// AMQPLAIN), tune (2047 channels, 131072-byte frames, no heartbeat),
// open-ok, asserting the client's start-ok, tune-ok and open.
func (tc *testConn) handshake() {
	tc.t.Helper()
	tc.handshakeWith(defaultHandshake())
}

func (tc *testConn) handshakeWith(hs handshakeSpec) {
	tc.t.Helper()
	tc.serverStartAndWantStartOK(hs.mechanisms)
	tc.writeMethod(0, &hs.tune)
	tuneOK := tc.readMethod(0)
	require.IsType(tc.t, &frames.ConnectionTuneOK{}, tuneOK)
	tn := tc.conn.Tuning()
	require.Equal(tc.t, &frames.ConnectionTuneOK{ChannelMax: tn.ChannelMax, FrameMax: tn.FrameMax, Heartbeat: uint16(tn.Heartbeat / time.Second)}, tuneOK)
	vhost := tc.cfg.VirtualHost
	if vhost == "" {
		vhost = "/"
	}
	tc.wantMethod(0, &frames.ConnectionOpen{VirtualHost: vhost})
	require.Equal(tc.t, StateAwaitOpenOK, tc.conn.State())
	tc.wantIdle()
	tc.writeMethod(0, &frames.ConnectionOpenOK{})
	tc.wantEvent(EventConnected)
	require.Equal(tc.t, StateOpen, tc.conn.State())
	tc.wantIdle()
}

// serverStartAndWantStartOK sends connection.start and asserts the
// start-ok of the authenticator the machine should pick.
func (tc *testConn) serverStartAndWantStartOK(mechanisms string) Authenticator {
	tc.t.Helper()
	tc.writeMethod(0, serverStart(mechanisms))
	var auth Authenticator
	offered := strings.Fields(mechanisms)
	for _, a := range tc.cfg.Auth {
		if slices.Contains(offered, a.Mechanism()) {
			auth = a
			break
		}
	}
	require.NotNil(tc.t, auth, "test error: no common mechanism")
	resp, err := auth.Response()
	require.NoError(tc.t, err)
	cfg, err := tc.cfg.withDefaults()
	require.NoError(tc.t, err)
	tc.wantMethod(0, &frames.ConnectionStartOK{
		ClientProperties: cfg.clientProperties(),
		Mechanism:        auth.Mechanism(),
		Response:         string(resp),
		Locale:           "en_US",
	})
	require.Equal(tc.t, auth.Mechanism(), tc.conn.Mechanism())
	require.Equal(tc.t, StateAwaitTune, tc.conn.State())
	return auth
}

// openChannel opens the next channel and asserts its id.
func (tc *testConn) openChannel(want uint16) {
	tc.t.Helper()
	id, err := tc.conn.OpenChannel()
	require.NoError(tc.t, err)
	require.Equal(tc.t, want, id, "channel id")
	require.Equal(tc.t, ChannelOpening, tc.conn.ChannelState(id))
	tc.wantMethod(id, &frames.ChannelOpen{})
	tc.writeMethod(id, &frames.ChannelOpenOK{})
	e := tc.wantEvent(EventChannelOpen)
	require.Equal(tc.t, id, e.Channel)
	require.Equal(tc.t, ChannelOpen, tc.conn.ChannelState(id))
}

// call sends m on ch, asserts that exactly m was written and that a
// request got a token (and anything else none), and returns the token.
func (tc *testConn) call(ch uint16, m frames.Method) Token {
	tc.t.Helper()
	tok, err := tc.conn.Call(ch, m)
	require.NoError(tc.t, err)
	if m.ExpectsReply() {
		tc.track(ch, tok)
	} else {
		require.Zero(tc.t, tok, "%s has no reply, but got a token", m.Key())
	}
	tc.wantMethod(ch, m)
	return tok
}

// reply feeds the server's reply and asserts the EventReply it causes.
func (tc *testConn) reply(ch uint16, request frames.MethodKey, m frames.Method) Event {
	tc.t.Helper()
	tc.writeMethod(ch, m)
	e := tc.wantEvent(EventReply)
	require.Equal(tc.t, ch, e.Channel)
	require.Equal(tc.t, request, e.Request, "reply to %s, want to %s", e.Request, request)
	require.Equal(tc.t, m, e.Method)
	require.NoError(tc.t, e.Err)
	return e
}

// wantFailed asserts that the next event fails request tok (a request of
// kind key on channel ch) with an error matching target.
func (tc *testConn) wantFailed(ch uint16, tok Token, key frames.MethodKey, target error) {
	tc.t.Helper()
	e := tc.wantEvent(EventReply)
	require.Equal(tc.t, Event{Kind: EventReply, Channel: ch, Token: tok, Request: key, Err: e.Err, Message: e.Message}, e, "want request %d (%s) failed", tok, key)
	require.ErrorIs(tc.t, e.Err, target)
}

// consume starts consumer tag on ch and completes it.
func (tc *testConn) consume(ch uint16, tag string, noAck bool) {
	tc.t.Helper()
	tc.call(ch, &frames.BasicConsume{Queue: "q", ConsumerTag: tag, NoAck: noAck})
	tc.reply(ch, frames.MethodBasicConsume, &frames.BasicConsumeOK{ConsumerTag: tag})
}

// testAllModes runs scenario with every feed mode and checks that the
// machine reported the same events in each.
func testAllModes(t *testing.T, cfg Config, scenario func(tc *testConn)) {
	t.Helper()
	testAllModesWith(t, func() Config { return cfg }, scenario)
}

// testAllModesWith is testAllModes with a fresh Config for every run (for
// authenticators with state).
func testAllModesWith(t *testing.T, cfg func() Config, scenario func(tc *testConn)) {
	t.Helper()
	var logs [][]Event
	for _, m := range feedModes {
		t.Run(m.String(), func(t *testing.T) {
			tc := newTestConn(t, cfg(), withFeedMode(m))
			scenario(tc)
			logs = append(logs, tc.log)
		})
	}
	if t.Failed() || len(logs) != len(feedModes) {
		return
	}
	for i := 1; i < len(logs); i++ {
		require.Equal(t, logs[0], logs[i], "events fed %s differ from events fed %s", feedModes[i], feedModes[0])
	}
}

// TestHarnessFeedModes checks the harness itself: the three modes feed the
// same bytes, split as announced.
func TestHarnessFeedModes(t *testing.T) {
	b := make([]byte, 1000)
	for i := range b {
		b[i] = byte(i)
	}
	for _, m := range feedModes {
		tc := &testConn{t: t, mode: m, rng: rand.New(rand.NewPCG(1, 2))}
		chunks := tc.split(b)
		require.Equal(t, b, bytes.Join(chunks, nil), m.String())
		switch m {
		case feedWhole:
			require.Len(t, chunks, 1)
		case feedBytes:
			require.Len(t, chunks, len(b))
		case feedRandom, feedAdopt:
			require.Greater(t, len(chunks), 1)
			require.Less(t, len(chunks), len(b))
		}
	}
}

// serverTune is the tune of defaultHandshake.
func serverTune() *frames.ConnectionTune {
	t := defaultHandshake().tune
	return &t
}
