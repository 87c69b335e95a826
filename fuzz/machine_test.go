package fuzz

// FuzzMachine: the sans-IO client machine (proto/statemachine) fed
// arbitrary server bytes after a valid handshake.
//
// Each input runs twice on a fresh machine brought to the same state (see
// machineSetup): once fed whole, in one Feed call, and once split into
// chunks whose sizes derive from the input and handed over as a pooling
// driver does: into a pooled buffer given with Adopt when no partial frame
// is buffered, else into ReadBuffer; the input and outbound buffers are
// released after every drain, scribbled over and reused (the split run
// also sets Config.Trace, which must not change what happens). After every
// read the run does what a driver does: drain NextEvent, check and take
// AppendOutbound, and call HandleTimeout while Deadline has passed. Then it
// advances the clock from deadline to deadline a number of times derived
// from the input, and ends with FeedEOF.
//
// Checked: nothing panics; every event is well-formed (bodies no longer
// than Config.MaxMessageSize and as long as announced, confirms only for
// publishes made, each channel reported closed exactly once, nothing after
// EventClosed); every request token is answered by exactly one EventReply,
// in request order, before EventClosed; every publish is settled exactly
// once, by an EventConfirm or its channel's EventChannelClosed, which hand
// back its ref (as does a return bound to it); the connection's error is
// always one the machine documents (a *proto.ConnectionError, or
// ErrHeartbeatTimeout, or ErrConnectionLost after the end of the stream);
// the outbound buffer stays within a bound proportional to the input;
// after FeedEOF the machine is closed and reported EventClosed exactly
// once; and the whole and split runs report the same events.
//
// To fuzz, from the repository root:
//
//	go test -run '^$' -fuzz '^FuzzMachine$' -fuzztime 60s ./fuzz/

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
)

// The machine's limits, small so that the fuzzer reaches them.
const (
	fuzzFrameMax       = 4096 // negotiated frame_max
	fuzzMaxMessageSize = 1500 // Config.MaxMessageSize: more than one frame, less than two
	fuzzHeartbeat      = 2 * time.Second
	fuzzCloseTimeout   = 5 * time.Second
)

// The channels of the setup, in the states machineSetup leaves them in.
const (
	chOpen    uint16 = 1 // open, confirm mode, two consumers, 3 publishes, queue.declare and basic.get pending
	chOpening uint16 = 2 // channel.open sent, no open-ok yet
	chClosing uint16 = 3 // open, then channel.close sent, no close-ok yet
)

// Names used by the setup and the hand-made seeds.
const (
	fuzzTagAck    = "ctag-ack"   // consumer on chOpen that needs acks
	fuzzTagNoAck  = "ctag-noack" // consumer on chOpen with NoAck
	fuzzPublishes = 3            // publishes made on chOpen in the setup
)

var fuzzEpoch = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// method encodes one method frame, or panics (seed and setup code only).
func method(ch uint16, m frames.Method) []byte {
	b, err := frames.AppendMethod(nil, ch, m)
	if err != nil {
		panic(err)
	}
	return b
}

// message encodes a content-carrying method with its header and body in
// frames of at most fuzzFrameMax bytes.
func message(ch uint16, m frames.Method, p *proto.Properties, body []byte) []byte {
	b, err := frames.AppendMessage(nil, ch, m, p, body, fuzzFrameMax)
	if err != nil {
		panic(err)
	}
	return b
}

// machineRun is one machine fed one input, and what it reported.
type machineRun struct {
	t      *testing.T
	c      *statemachine.Conn
	now    time.Time
	input  int // length of the fuzz input: bounds the outbound bytes
	events []eventRecord
	closed map[uint16]int // EventChannelClosed per channel
	traces int

	pooling bool                            // read as a pooling driver does (see the top of the file)
	pool    [][]byte                        // released input buffers
	pending map[uint16][]statemachine.Token // requests awaiting their EventReply, per channel, oldest first
	refs    [fuzzPublishes + 1]*int         // the ref of each publish on chOpen, by sequence number
	settled [fuzzPublishes + 1]int          // how many times each publish was settled
	issued  []statemachine.Token            // every request token
	answers map[statemachine.Token]int      // EventReply count per token
}

// eventRecord is what the whole and split runs must agree on.
type eventRecord struct {
	Kind        statemachine.EventKind
	Channel     uint16
	Request     frames.MethodKey
	Reply       string // the reply method, encoded
	DeliveryTag uint64 // message or confirm
	ConsumerTag string
	PublishSeq  uint64
	BodySize    uint64
	Body        uint32 // checksum
	BodyLen     int
	Props       uint32 // checksum of the headers table and content type
	Multiple    bool
	Ack         bool
	Active      bool
	Unconfirmed int
	Err         string
	Token       statemachine.Token
	Publishes   []uint64 // sequence numbers settled or given up
}

// newMachineRun builds a machine and brings it to the setup state (see
// machineSetup), checking every step.
func newMachineRun(t *testing.T, input int, trace bool) *machineRun {
	r := &machineRun{t: t, now: fuzzEpoch, input: input, closed: map[uint16]int{}, pooling: trace,
		pending: map[uint16][]statemachine.Token{}, answers: map[statemachine.Token]int{}}
	cfg := statemachine.Config{
		Auth:           []statemachine.Authenticator{statemachine.PlainAuth{Username: "guest", Password: "guest"}},
		FrameMax:       fuzzFrameMax,
		Heartbeat:      fuzzHeartbeat,
		CloseTimeout:   fuzzCloseTimeout,
		MaxMessageSize: fuzzMaxMessageSize,
	}
	if trace {
		cfg.Trace = func(dir statemachine.Direction, ch uint16, frame string) {
			isTrue(t, frame != "", "empty trace line")
			isTrue(t, dir == statemachine.Sent || dir == statemachine.Received, "trace direction %d", dir)
			r.traces++
		}
	}
	c, err := statemachine.NewConn(cfg)
	noError(t, err)
	r.c = c
	c.Start(r.now)
	out := c.AppendOutbound(nil)
	equal(t, frames.ProtocolHeader, string(out))

	setup := machineSetup()
	r.serverSays(setup.handshake, statemachine.EventConnected)
	equal(t, statemachine.StateOpen, c.State())
	equal(t, fuzzHeartbeat, c.Tuning().Heartbeat)
	equal(t, uint32(fuzzFrameMax), c.Tuning().FrameMax)

	for _, want := range []uint16{chOpen, chOpening, chClosing} {
		id, err := c.OpenChannel()
		noError(t, err)
		equal(t, want, id)
	}
	r.serverSays(setup.openOK, statemachine.EventChannelOpen, statemachine.EventChannelOpen)
	var tokens []statemachine.Token
	call := func(m frames.Method, track bool) {
		tok, err := c.Call(chOpen, m)
		noError(t, err)
		isTrue(t, tok != 0, "no token for %s", m.Key())
		for _, old := range tokens {
			isTrue(t, old != tok, "token %d handed out twice", tok)
		}
		tokens = append(tokens, tok)
		if track { // the setup's own requests are answered in the setup
			r.issued = append(r.issued, tok)
			r.pending[chOpen] = append(r.pending[chOpen], tok)
		}
	}
	call(&frames.ConfirmSelect{}, false)
	call(&frames.BasicConsume{Queue: "q", ConsumerTag: fuzzTagAck}, false)
	call(&frames.BasicConsume{Queue: "q", ConsumerTag: fuzzTagNoAck, NoAck: true}, false)
	r.serverSays(setup.replies, statemachine.EventReply, statemachine.EventReply, statemachine.EventReply)
	isTrue(t, c.Consuming(), "consumers registered, but not Consuming")
	props := &proto.Properties{ContentType: "text/plain", Headers: proto.Table{{Name: "k", Value: proto.Int32(1)}}}
	for i := range fuzzPublishes {
		r.refs[i+1] = new(int)
		seq, err := c.Publish(chOpen, &frames.BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true}, props, make([]byte, 100*i), r.refs[i+1])
		noError(t, err)
		equal(t, uint64(i+1), seq)
	}
	call(&frames.QueueDeclare{Queue: "q"}, true)
	call(&frames.BasicGet{Queue: "q"}, true)
	noError(t, c.CloseChannel(chClosing, proto.Reply{}))
	r.pump()
	isTrue(t, r.c.OutboundLen() == 0)
	equal(t, fuzzPublishes, c.Unconfirmed(chOpen))
	equal(t, statemachine.ChannelOpening, c.ChannelState(chOpening))
	equal(t, statemachine.ChannelClosing, c.ChannelState(chClosing))
	r.events = nil
	return r
}

// serverSays feeds setup bytes and requires exactly the events want.
func (r *machineRun) serverSays(b []byte, want ...statemachine.EventKind) {
	noError(r.t, r.c.Feed(b))
	var got []statemachine.EventKind
	for e := r.c.NextEvent(); e.Kind != statemachine.EventNone; e = r.c.NextEvent() {
		got = append(got, e.Kind)
	}
	equal(r.t, want, got, "setup events (state %s, err %v)", r.c.State(), r.c.Err())
	r.c.AppendOutbound(nil)
}

// setupStreams are the server's bytes for the setup.
type setupStreams struct {
	handshake []byte // connection.start, tune, open-ok
	openOK    []byte // channel.open-ok for chOpen and chClosing
	replies   []byte // confirm.select-ok and two consume-oks on chOpen
}

// machineSetup returns the server side of the setup: a PLAIN login, tune
// with frame_max 4096 and a 2 s heartbeat, open-ok; channels 1 and 3
// open (2 stays opening); on channel 1 confirm mode and two consumers
// (fuzzTagAck with acks, fuzzTagNoAck without). newMachineRun then
// publishes fuzzPublishes messages on channel 1 and leaves queue.declare and
// basic.get pending there, and sends channel.close on channel 3.
var machineSetup = sync.OnceValue(func() *setupStreams {
	var s setupStreams
	s.handshake = bytes.Join([][]byte{
		method(0, &frames.ConnectionStart{
			VersionMajor: 0, VersionMinor: 9,
			ServerProperties: proto.Table{{Name: "product", Value: proto.String("RabbitMQ")}},
			Mechanisms:       "AMQPLAIN PLAIN", Locales: "en_US",
		}),
		method(0, &frames.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: uint16(fuzzHeartbeat / time.Second)}),
		method(0, &frames.ConnectionOpenOK{}),
	}, nil)
	s.openOK = append(method(chOpen, &frames.ChannelOpenOK{}), method(chClosing, &frames.ChannelOpenOK{})...)
	s.replies = bytes.Join([][]byte{
		method(chOpen, &frames.ConfirmSelectOK{}),
		method(chOpen, &frames.BasicConsumeOK{ConsumerTag: fuzzTagAck}),
		method(chOpen, &frames.BasicConsumeOK{ConsumerTag: fuzzTagNoAck}),
	}, nil)
	return &s
})

// feed feeds one chunk and then does what a driver does.
func (r *machineRun) feed(chunk []byte) {
	wasClosed := r.c.State() == statemachine.StateClosed
	var err error
	switch {
	case !r.pooling:
		err = r.c.Feed(chunk)
	case r.c.HasInput():
		err = r.c.Received(copy(r.c.ReadBuffer(len(chunk)), chunk))
	default:
		var buf []byte
		if n := len(r.pool); n > 0 {
			buf, r.pool = r.pool[n-1], r.pool[:n-1]
		}
		err = r.c.Adopt(append(buf[:0], chunk...))
	}
	if wasClosed {
		errorIs(r.t, err, statemachine.ErrClosed, "Feed after close")
	} else {
		noError(r.t, err, "Feed in state %s", r.c.State())
	}
	r.pump()
}

// pump drains the events, takes the outbound bytes and runs HandleTimeout
// while the deadline has passed.
func (r *machineRun) pump() {
	for i := 0; ; i++ {
		isTrue(r.t, i < 100, "the machine keeps asking for HandleTimeout at %v", r.now)
		r.drain()
		if r.pooling {
			had := r.c.HasInput()
			if b := r.c.ReleaseInput(); b != nil {
				isTrue(r.t, !had && len(b) == 0, "ReleaseInput gave back %d bytes (input held: %v)", len(b), had)
				scribble(b)
				r.pool = append(r.pool, b)
			}
		}
		// Every server frame causes at most one small answer (close-ok,
		// flow-ok, cancel-ok, reject) or the one connection.close.
		isTrue(r.t, r.c.OutboundLen() <= 64<<10+16*r.input,
			"%d outbound bytes for a %d-byte input", r.c.OutboundLen(), r.input)
		r.c.AppendOutbound(nil)
		equal(r.t, 0, r.c.OutboundLen(), "AppendOutbound left bytes behind")
		if r.pooling {
			if b := r.c.ReleaseOutbound(); b != nil {
				scribble(b)
			}
		}
		dl := r.c.Deadline()
		if dl.IsZero() || dl.After(r.now) {
			return
		}
		r.c.HandleTimeout(r.now)
	}
}

// advance moves the clock to the next deadline and handles it.
func (r *machineRun) advance() bool {
	dl := r.c.Deadline()
	if dl.IsZero() {
		return false
	}
	isTrue(r.t, dl.After(r.now), "deadline %v not after now %v although pump handled it", dl, r.now)
	r.now = dl
	r.c.HandleTimeout(r.now)
	r.pump()
	return true
}

// scribble overwrites a released buffer's whole capacity, so that a view
// the machine kept into it would show.
func scribble(b []byte) {
	b = b[:cap(b)]
	for i := range b {
		b[i] = 0x5A
	}
}

func (r *machineRun) drain() {
	for {
		e := r.c.NextEvent()
		if e.Kind == statemachine.EventNone {
			return
		}
		r.check(e)
	}
}

// check checks one event and records it.
func (r *machineRun) check(e statemachine.Event) {
	t := r.t
	if n := len(r.events); n > 0 {
		isTrue(t, r.events[n-1].Kind != statemachine.EventClosed, "%s event after EventClosed", e.Kind)
	}
	rec := eventRecord{Kind: e.Kind, Channel: e.Channel, Request: e.Request, Multiple: e.Multiple, Ack: e.Ack,
		Active: e.Active, Unconfirmed: e.Unconfirmed, ConsumerTag: e.ConsumerTag, Token: e.Token}
	for _, p := range e.Publishes {
		rec.Publishes = append(rec.Publishes, p.Seq)
	}
	if e.Kind != statemachine.EventConfirm && e.Kind != statemachine.EventChannelClosed {
		isTrue(t, len(e.Publishes) == 0, "%s event with Publishes", e.Kind)
	}
	if e.Err != nil {
		rec.Err = e.Err.Error()
	}
	m := e.Message
	isTrue(t, len(m.Body) <= fuzzMaxMessageSize, "%s event with a %d-byte body, MaxMessageSize %d", e.Kind, len(m.Body), fuzzMaxMessageSize)
	rec.BodySize, rec.BodyLen, rec.Body = m.BodySize, len(m.Body), crc32.ChecksumIEEE(m.Body)
	rec.Props = crc32.Update(crc32.ChecksumIEEE(m.Properties.Headers), crc32.IEEETable, m.Properties.ContentType)
	rec.DeliveryTag, rec.PublishSeq = m.DeliveryTag, m.PublishSeq
	if rec.ConsumerTag == "" {
		rec.ConsumerTag = m.ConsumerTag
	}
	// Channel 2 takes content, flow and cancels once the fuzzer opens it;
	// channel 3 discards everything but close and close-ok.
	contentChannel := e.Channel == chOpen || e.Channel == chOpening
	switch e.Kind {
	case statemachine.EventDelivery, statemachine.EventReturn:
		isTrue(t, contentChannel, "%s on channel %d", e.Kind, e.Channel)
		equal(t, m.BodySize, uint64(len(m.Body)), "%s body of %d bytes, %d announced", e.Kind, len(m.Body), m.BodySize)
		isTrue(t, m.PublishSeq <= fuzzPublishes, "return bound to publish %d of %d", m.PublishSeq, fuzzPublishes)
		if m.PublishRef != nil {
			isTrue(t, m.PublishSeq != 0 && m.PublishRef == any(r.refs[m.PublishSeq]), "return of publish %d with the ref of another", m.PublishSeq)
		}
		if e.Kind == statemachine.EventDelivery || m.PublishSeq == 0 {
			isTrue(t, m.PublishRef == nil, "%s event with a publish ref", e.Kind)
		}
	case statemachine.EventMessageTooLarge:
		isTrue(t, contentChannel, "%s on channel %d", e.Kind, e.Channel)
		isTrue(t, m.BodySize > fuzzMaxMessageSize, "message of %d bytes refused as too large", m.BodySize)
		isTrue(t, len(m.Body) == 0, "refused message with a body")
	case statemachine.EventReply:
		equal(t, chOpen, e.Channel, "reply on a channel with no request pending")
		q := r.pending[e.Channel]
		isTrue(t, len(q) > 0 && q[0] == e.Token, "reply with token %d, want the oldest of %v", e.Token, q)
		r.pending[e.Channel] = q[1:]
		r.answers[e.Token]++
		if e.Method == nil {
			isTrue(t, e.Err != nil, "reply with neither a method nor an error")
			rec.Reply = "failed"
			break
		}
		noError(t, e.Err, "reply with both a method and an error")
		enc, err := frames.AppendMethodArgs(nil, e.Method)
		noError(t, err, "a reply does not encode")
		rec.Reply = fmt.Sprintf("%x", enc)
		isTrue(t, frames.AcceptsReply(e.Request, e.Method.Key()), "%s answers %s", e.Method.Key(), e.Request)
		if gok, ok := e.Method.(*frames.BasicGetOK); ok {
			equal(t, m.BodySize, uint64(len(m.Body)))
			equal(t, gok.DeliveryTag, m.DeliveryTag)
		}
	case statemachine.EventConfirm:
		equal(t, chOpen, e.Channel, "confirm on a channel not in confirm mode")
		isTrue(t, e.DeliveryTag >= 1 && e.DeliveryTag <= fuzzPublishes, "confirm of tag %d, %d published", e.DeliveryTag, fuzzPublishes)
		isTrue(t, e.Multiple || len(e.Publishes) == 1, "single confirm settling %d publishes", len(e.Publishes))
		if n := len(e.Publishes); n > 0 {
			isTrue(t, e.Publishes[n-1].Seq <= e.DeliveryTag, "confirm of %d settling publish %d", e.DeliveryTag, e.Publishes[n-1].Seq)
		}
		r.settle(e.Publishes)
		rec.DeliveryTag = e.DeliveryTag
	case statemachine.EventChannelClosed:
		r.closed[e.Channel]++
		equal(t, 1, r.closed[e.Channel], "channel %d reported closed twice", e.Channel)
		isTrue(t, e.Channel == chOpen || e.Channel == chOpening || e.Channel == chClosing, "unknown channel %d closed", e.Channel)
		isTrue(t, e.Unconfirmed >= 0 && e.Unconfirmed <= fuzzPublishes, "%d unconfirmed", e.Unconfirmed)
		equal(t, e.Unconfirmed, len(e.Publishes))
		isTrue(t, len(r.pending[e.Channel]) == 0, "channel %d closed with requests unanswered: %v", e.Channel, r.pending[e.Channel])
		if e.Channel != chOpen {
			equal(t, 0, e.Unconfirmed)
		} else {
			r.settle(e.Publishes)
			for seq := 1; seq <= fuzzPublishes; seq++ {
				equal(t, 1, r.settled[seq], "publish %d settled %d times by the end of its channel", seq, r.settled[seq])
			}
		}
		r.checkChannelErr(e.Channel, e.Err)
	case statemachine.EventClosed:
		isTrue(t, e.Err != nil, "connection closed without an error")
		equal(t, statemachine.StateClosed, r.c.State())
		equal(t, e.Err, r.c.Err(), "EventClosed and Err disagree")
		for _, id := range []uint16{chOpen, chOpening, chClosing} {
			equal(t, 1, r.closed[id], "channel %d not reported closed (once) before the connection", id)
		}
		for _, tok := range r.issued {
			equal(t, 1, r.answers[tok], "token %d answered %d times", tok, r.answers[tok])
		}
		isTrue(t, !r.c.Consuming(), "Consuming after the connection closed")
		r.checkConnErr(e.Err, true)
	case statemachine.EventFlow, statemachine.EventConsumerCancelled:
		isTrue(t, contentChannel, "%s on channel %d", e.Kind, e.Channel)
	case statemachine.EventBlocked, statemachine.EventUnblocked:
		equal(t, uint16(0), e.Channel)
	case statemachine.EventChannelOpen:
		equal(t, chOpening, e.Channel)
	default:
		t.Fatalf("unexpected %s event", e.Kind)
	}
	r.events = append(r.events, rec)
}

// settle records publishes settled (or given up), each with its own ref,
// in sequence order, each once.
func (r *machineRun) settle(pubs []statemachine.Published) {
	t := r.t
	for i, p := range pubs {
		isTrue(t, p.Seq >= 1 && p.Seq <= fuzzPublishes, "publish %d settled, %d published", p.Seq, fuzzPublishes)
		isTrue(t, i == 0 || pubs[i-1].Seq < p.Seq, "publishes out of order: %v", pubs)
		isTrue(t, p.Ref == any(r.refs[p.Seq]), "publish %d settled with the ref of another", p.Seq)
		r.settled[p.Seq]++
		equal(t, 1, r.settled[p.Seq], "publish %d settled twice", p.Seq)
	}
}

// checkConnErr requires err to be an error the machine documents for a
// connection that was open: the peer's connection.close or our own for a
// protocol violation (*proto.ConnectionError), a heartbeat timeout, the
// server's protocol header (frames.ErrProtocolMismatch), or, after the end
// of the stream, a lost connection.
func (r *machineRun) checkConnErr(err error, eofAllowed bool) {
	t := r.t
	var ce *proto.ConnectionError
	switch {
	case errors.As(err, &ce):
		if ce.Origin == proto.ByLocal {
			isTrue(t, ce.Code != 0, "we closed with no reply code: %v", err)
			isTrue(t, len(ce.Text) > 0, "we closed with no reply text")
		} else {
			equal(t, proto.ByPeer, ce.Origin)
		}
	case errors.Is(err, statemachine.ErrHeartbeatTimeout):
	case errors.Is(err, frames.ErrProtocolMismatch):
		// A protocol header where a frame should start: the server
		// refuses the protocol and will close, so the machine gives up at
		// once, without a close handshake.
		var fe *frames.Error
		isTrue(t, errors.As(err, &fe), "protocol mismatch %q without its *frames.Error", err)
	case eofAllowed && errors.Is(err, statemachine.ErrConnectionLost):
	default:
		t.Fatalf("connection error %q (%T) is none the machine documents", err, err)
	}
}

// checkChannelErr checks why a channel closed: its own close-ok (nil) or
// close timeout for chClosing, the peer's channel.close, or the
// connection's end.
func (r *machineRun) checkChannelErr(id uint16, err error) {
	var che *proto.ChannelError
	switch {
	case err == nil:
		equal(r.t, chClosing, id, "channel %d closed cleanly without our close", id)
	case errors.As(err, &che):
		equal(r.t, proto.ByPeer, che.Origin)
		equal(r.t, id, che.Channel)
	case errors.Is(err, statemachine.ErrCloseTimeout):
		equal(r.t, chClosing, id, "close timeout on channel %d, which we did not close", id)
	default:
		r.checkConnErr(err, true)
	}
}

// chunker derives chunk sizes from the input: mostly short, now and then
// up to the whole rest.
type chunker struct{ x uint32 }

func (c *chunker) next(rest int) int {
	c.x ^= c.x << 13
	c.x ^= c.x >> 17
	c.x ^= c.x << 5
	if c.x%8 == 0 {
		return 1 + int(c.x>>3)%rest
	}
	return 1 + int(c.x>>3)%min(rest, 64)
}

// runMachine runs the whole scenario on data, fed whole or split.
func runMachine(t *testing.T, data []byte, split bool) []eventRecord {
	r := newMachineRun(t, len(data), split)
	sum := crc32.ChecksumIEEE(data)
	if split {
		ch := chunker{x: sum | 1}
		for rest := data; len(rest) > 0; {
			n := ch.next(len(rest))
			r.feed(rest[:n])
			rest = rest[n:]
		}
	} else if len(data) > 0 {
		r.feed(data)
	}

	switch st := r.c.State(); st {
	case statemachine.StateOpen:
		equal(t, nil, r.c.Err())
	case statemachine.StateClosing:
		var ce *proto.ConnectionError
		isTrue(t, errors.As(r.c.Err(), &ce) && ce.Origin == proto.ByLocal, "closing for %v", r.c.Err())
	case statemachine.StateClosed:
		r.checkConnErr(r.c.Err(), false)
	default:
		t.Fatalf("state %s after the handshake", st)
	}

	// The clock: from deadline to deadline, a number of times derived
	// from the input (heartbeats, the heartbeat timeout, close timeouts).
	for range sum % 8 {
		if !r.advance() {
			break
		}
	}
	before := r.c.State()
	errBefore := r.c.Err()
	switch before {
	case statemachine.StateOpen:
		equal(t, nil, errBefore)
	case statemachine.StateClosing, statemachine.StateClosed:
		r.checkConnErr(errBefore, false)
	default:
		t.Fatalf("state %s after the handshake", before)
	}

	r.c.FeedEOF()
	r.pump()
	equal(t, statemachine.StateClosed, r.c.State(), "not closed after EOF")
	closedEvents := 0
	for _, e := range r.events {
		if e.Kind == statemachine.EventClosed {
			closedEvents++
		}
	}
	equal(t, 1, closedEvents, "EventClosed reported %d times", closedEvents)
	equal(t, statemachine.EventClosed, r.events[len(r.events)-1].Kind)
	if before == statemachine.StateOpen {
		errorIs(t, r.c.Err(), statemachine.ErrConnectionLost)
	} else {
		equal(t, errBefore, r.c.Err(), "EOF changed the error of a closing or closed connection")
	}
	isTrue(t, r.c.Deadline().IsZero(), "a closed machine wants a timer")
	errorIs(t, r.c.Feed([]byte{1}), statemachine.ErrClosed)
	r.c.HandleTimeout(r.now.Add(time.Hour))
	equal(t, statemachine.EventNone, r.c.NextEvent().Kind)
	if split {
		isTrue(t, r.traces > 0, "Trace never called")
	}
	return r.events
}

// FuzzMachine feeds arbitrary server bytes to a connected machine; see the
// comment at the top of this file.
func FuzzMachine(f *testing.F) {
	s := newSeeds(f)
	for _, b := range handMadeServerStreams() {
		s.add(b)
	}
	for _, b := range recordedServerSessions(f) {
		s.add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := runMachine(t, data, false)
		split := runMachine(t, data, true)
		equal(t, whole, split, "the input fed whole and split gives different events")
	})
}

// handMadeServerStreams are server byte streams for the setup's machine.
func handMadeServerStreams() [][]byte {
	props := &proto.Properties{ContentType: "application/json", DeliveryMode: proto.Persistent,
		Headers: proto.Table{{Name: "x-request-id", Value: proto.String("r-1")}, {Name: "x-retry-count", Value: proto.Int32(2)}}}
	deliver := func(tag uint64, ctag string, body []byte) []byte {
		return message(chOpen, &frames.BasicDeliver{ConsumerTag: ctag, DeliveryTag: tag, Exchange: "ex", RoutingKey: "rk"}, props, body)
	}
	big := bytes.Repeat([]byte("0123456789"), 145) // 1450 bytes: under the limit
	tooBig := bytes.Repeat([]byte("x"), fuzzMaxMessageSize+1)
	hb := frames.AppendHeartbeat(nil)
	return [][]byte{
		nil,
		// A delivery to each consumer, the second in two body frames.
		append(deliver(1, fuzzTagAck, []byte("hello")), deliver(2, fuzzTagNoAck, big)...),
		// Confirms: ack 1, nack 2, ack multiple 3.
		bytes.Join([][]byte{
			method(chOpen, &frames.BasicAck{DeliveryTag: 1}),
			method(chOpen, &frames.BasicNack{DeliveryTag: 2, Requeue: true}),
			method(chOpen, &frames.BasicAck{DeliveryTag: 3, Multiple: true}),
		}, nil),
		// A return bound to the ack that follows it.
		append(message(chOpen, &frames.BasicReturn{ReplyCode: 312, ReplyText: "NO_ROUTE", Exchange: "ex", RoutingKey: "rk"}, props, []byte("back")),
			method(chOpen, &frames.BasicAck{DeliveryTag: 2, Multiple: true})...),
		// The replies pending on channel 1, and open-ok on channel 2.
		bytes.Join([][]byte{
			method(chOpen, &frames.QueueDeclareOK{Queue: "q", MessageCount: 1}),
			message(chOpen, &frames.BasicGetOK{DeliveryTag: 9, Exchange: "ex", RoutingKey: "rk", MessageCount: 0}, props, []byte("got")),
			method(chOpening, &frames.ChannelOpenOK{}),
		}, nil),
		// Too large: a delivery refused, then a get-ok refused.
		bytes.Join([][]byte{
			deliver(5, fuzzTagAck, tooBig),
			method(chOpen, &frames.QueueDeclareOK{Queue: "q"}),
			message(chOpen, &frames.BasicGetOK{DeliveryTag: 6}, nil, tooBig),
		}, nil),
		// The server closes channel 1; close-ok for channel 3.
		append(method(chOpen, &frames.ChannelClose{ReplyCode: 404, ReplyText: "NOT_FOUND - no queue 'q'", ClassID: 50, MethodID: 10}),
			method(chClosing, &frames.ChannelCloseOK{})...),
		// The server closes the connection.
		method(0, &frames.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"}),
		// Notifications and heartbeats.
		bytes.Join([][]byte{
			hb,
			method(0, &frames.ConnectionBlocked{Reason: "low on memory"}),
			method(chOpen, &frames.ChannelFlow{Active: false}),
			hb,
			method(chOpen, &frames.BasicCancel{ConsumerTag: fuzzTagNoAck}),
			method(0, &frames.ConnectionUnblocked{}),
			method(chOpen, &frames.ChannelFlow{Active: true}),
		}, nil),
		// Protocol violations: content without a method, a frame over
		// frame_max, a crossing close after ours.
		contentOnly(props, []byte("x")),
		{byte(frames.FrameBody), 0, byte(chOpen), 0, 0x20, 0, 0},
		append(method(chOpen, &frames.BasicAck{DeliveryTag: 4}),
			method(0, &frames.ConnectionClose{ReplyCode: 200})...),
		append(method(chOpen, &frames.ChannelOpenOK{}), method(0, &frames.ConnectionCloseOK{})...),
		// Garbage, and a refused protocol version.
		[]byte("HTTP/1.1 400 Bad Request\r\n\r\n"),
		[]byte("AMQP\x00\x00\x09\x01"),
		{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 60, 0xCE},
	}
}

// contentOnly is a content header and body on channel 1 with no method.
func contentOnly(p *proto.Properties, body []byte) []byte {
	b, err := frames.AppendContentHeader(nil, chOpen, uint64(len(body)), p)
	if err != nil {
		panic(err)
	}
	return frames.AppendBody(b, chOpen, body, fuzzFrameMax)
}

// recordedServerSessions returns, for two recorded server streams, the
// stream after connection.open-ok up to its first frame over frame_max,
// and runs of whole frames of at most windowSize bytes cut from that. It returns nil when the
// recordings are not there.
func recordedServerSessions(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, name := range []string{"session-full", "confirms-nack"} {
		b, err := os.ReadFile(filepath.Join(recordedDir, name+".server.bin"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		rest := afterOpenOK(b)
		if rest == nil {
			tb.Fatalf("%s: no connection.open-ok", name)
		}
		// The machine refuses the first frame over frame_max (4096 here)
		// and parses nothing after it: stop the stream there, which also
		// keeps session-full's 300 KB out of the corpus.
		rest = rest[:beforeFrameOver(rest, fuzzFrameMax)]
		out = append(out, rest)
		start, end := 0, 0
		for end < len(rest) {
			_, n, err := frames.ReadFrame(rest[end:], 0)
			if err != nil || n == 0 {
				break
			}
			if end+n-start > windowSize {
				if end > start {
					out = append(out, rest[start:end])
				}
				start = end
				if n > windowSize {
					start = end + n
				}
			}
			end += n
		}
		if end > start {
			out = append(out, rest[start:end])
		}
	}
	return out
}

// beforeFrameOver returns the length of the run of whole frames at the
// front of b that are at most frameMax bytes each.
func beforeFrameOver(b []byte, frameMax int) int {
	off := 0
	for off < len(b) {
		_, n, err := frames.ReadFrame(b[off:], 0)
		if err != nil || n == 0 || n > frameMax {
			break
		}
		off += n
	}
	return off
}

// afterOpenOK returns what follows the connection.open-ok frame of a
// server stream, or nil.
func afterOpenOK(b []byte) []byte {
	for off := 0; off < len(b); {
		f, n, err := frames.ReadFrame(b[off:], 0)
		if err != nil || n == 0 {
			return nil
		}
		off += n
		if f.Type == frames.FrameMethod && f.Channel == 0 && len(f.Payload) >= 4 &&
			frames.Key(uint16(f.Payload[0])<<8|uint16(f.Payload[1]), uint16(f.Payload[2])<<8|uint16(f.Payload[3])) == frames.MethodConnectionOpenOK {
			return b[off:]
		}
	}
	return nil
}
