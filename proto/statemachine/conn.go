package statemachine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// State is the connection's state. Transitions:
//
//	New ──Start──▶ AwaitStart ──start/start-ok──▶ AwaitTune ──(secure/secure-ok)*, tune/tune-ok+open──▶ AwaitOpenOK ──open-ok──▶ Open
//	any but Closed ──Close, or a protocol violation by the peer──▶ Closing ──close-ok, EOF or timeout──▶ Closed
//	any but Closed ──connection.close from the peer, EOF, handshake or heartbeat timeout──▶ Closed
type State uint8

// The connection states.
const (
	StateNew         State = iota // created; Start not called
	StateAwaitStart               // protocol header sent, waiting for connection.start
	StateAwaitTune                // start-ok sent, waiting for secure or tune
	StateAwaitOpenOK              // tune-ok and open sent, waiting for open-ok
	StateOpen                     // ready for channels
	StateClosing                  // we sent connection.close; only close and close-ok count now
	StateClosed                   // done; Err says why
)

// String names the state.
func (s State) String() string {
	return [...]string{"new", "await-start", "await-tune", "await-open-ok", "open", "closing", "closed"}[s]
}

// Errors reported by the machine. Errors from the broker are
// *proto.ConnectionError and *proto.ChannelError.
var (
	ErrNotStarted       = errors.New("amqp: connection not started")
	ErrNotOpen          = errors.New("amqp: connection is not open")
	ErrClosed           = errors.New("amqp: connection closed")
	ErrConnectionLost   = errors.New("amqp: connection lost")
	ErrHeartbeatTimeout = errors.New("amqp: no heartbeat from the server")
	ErrHandshakeTimeout = errors.New("amqp: handshake timed out")
	ErrCloseTimeout     = errors.New("amqp: close-ok never came")
	ErrNoMechanism      = errors.New("amqp: no common SASL mechanism")
	ErrChannelNotOpen   = errors.New("amqp: channel not open")
	ErrNoFreeChannel    = errors.New("amqp: no free channel id")
	ErrConsumerTagInUse = errors.New("amqp: consumer tag already in use on this channel")
	ErrNotAllowed       = errors.New("amqp: method not allowed here")
	ErrMessageTooLarge  = errors.New("amqp: message larger than MaxMessageSize")
)

// Tuning holds the values negotiated in connection.tune / tune-ok.
type Tuning struct {
	ChannelMax uint16        // highest usable channel id
	FrameMax   uint32        // largest frame either side sends, framing included
	Heartbeat  time.Duration // zero: no heartbeats
}

// Conn is the client side of one AMQP 0-9-1 connection as a pure state
// machine. It never touches a socket, a clock or a goroutine: the caller
// moves bytes and time in and out.
//
// Calling order, for one goroutine that owns the Conn:
//
//  1. Start(now) once; then repeatedly:
//  2. Feed what was read (FeedEOF at end of stream), call commands, or
//     HandleTimeout(now) when Deadline passes;
//  3. drain NextEvent until it returns EventNone;
//  4. write AppendOutbound's bytes to the peer;
//  5. arm a timer for Deadline (a time in the past means "call
//     HandleTimeout now").
//
// Events, their byte slices and their Publishes stay valid until the next
// Feed, Adopt, NextEvent or HandleTimeout call. A Conn is not safe for
// concurrent use.
//
// # Buffers
//
// An idle connection need not hold read or write buffers. A driver that
// takes them from a pool when data arrives reads like this: when HasInput
// is false, it reads into a buffer of its own and hands it over with
// Adopt(buf[:n]), which keeps the buffer instead of copying; when
// HasInput is true (a partial frame is buffered), it reads into
// ReadBuffer's space and calls Received, so the frame completes in place.
// Once NextEvent has returned EventNone, ReleaseInput gives the input
// buffer back (nil while a partial frame is buffered). On the write side,
// once AppendOutbound has taken every pending byte, ReleaseOutbound hands
// the machine's emptied outbound buffer over; the next command that sends
// something allocates another.
type Conn struct {
	cfg Config
	err error // why we are closing or closed; nil for a clean close

	in    []byte // received bytes; in[inOff:] not yet parsed
	inOff int

	out    []byte
	parser frames.Parser
	events eventQueue
	pubs   []Published // arena of the events' Publishes; see resetPublished

	auth        Authenticator
	serverProps []byte // the fields of connection.start's server-properties, encoded
	tuning      Tuning

	// Small fields share words (a Conn lives as long as its connection,
	// and an idle connection's footprint counts every byte).
	readMax       uint32
	state         State
	blocked       bool
	broken        bool // input no longer parseable after a framing error
	eof           bool // FeedEOF called; acted on once the buffered frames are parsed
	armClose      bool // arm closeAt at the next HandleTimeout (timers, below)
	recvSinceTick bool // (timers)
	sentSinceTick bool // (timers)

	channels []*channel // by id; nil when free
	scratch  struct {   // reused method values for the allocation-free commands
		ack    frames.BasicAck
		nack   frames.BasicNack
		reject frames.BasicReject
	}
	conn0     requestFIFO
	tagSeq    uint64
	tokenSeq  Token // the last token handed out
	consuming int   // consumers registered, over all channels

	// timers
	now          time.Time
	handshakeAt  time.Time
	closeAt      time.Time
	closingChans int // channels waiting for close-ok
	hbNext       time.Time
	lastRecv     time.Time
}

// NewConn returns a machine for cfg, in StateNew.
func NewConn(cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Conn{cfg: cfg, readMax: max(cfg.FrameMax, frames.FrameMinSize)}
	return c, nil
}

// State returns the connection state.
func (c *Conn) State() State { return c.state }

// Err returns why the connection is closing or closed (nil while open or
// after a clean close).
func (c *Conn) Err() error { return c.err }

// Tuning returns the negotiated limits (zero before connection.tune).
func (c *Conn) Tuning() Tuning { return c.tuning }

// ServerProperties returns the properties from connection.start, decoded
// anew on each call (the machine keeps them encoded, which takes a
// fraction of the memory): the table is the caller's.
func (c *Conn) ServerProperties() proto.Table {
	if c.serverProps == nil {
		return nil
	}
	t, _ := proto.DecodeTableFields(c.serverProps)
	return t
}

// Blocked reports whether the broker has blocked the connection
// (connection.blocked without a later unblocked).
func (c *Conn) Blocked() bool { return c.blocked }

// Mechanism returns the SASL mechanism chosen, once connection.start came.
func (c *Conn) Mechanism() string {
	if c.auth == nil {
		return ""
	}
	return c.auth.Mechanism()
}

// OutboundLen returns how many bytes AppendOutbound would write.
func (c *Conn) OutboundLen() int { return len(c.out) }

// Start sends the protocol header and starts the handshake timer.
func (c *Conn) Start(now time.Time) {
	if c.state != StateNew {
		return
	}
	c.now = now
	c.out = append(c.out, frames.ProtocolHeader...)
	c.trace(Sent, 0, "protocol-header AMQP 0-9-1")
	c.state = StateAwaitStart
	c.handshakeAt = now.Add(c.cfg.HandshakeTimeout)
	c.lastRecv = now
}

// Feed hands the machine bytes read from the peer, in any split. It copies
// them; p may be reused at once. Frames are parsed as NextEvent is called.
// Like Adopt, ReadBuffer and NextEvent, it invalidates the slices of
// earlier events.
func (c *Conn) Feed(p []byte) error { return c.take(p, false) }

// Adopt is Feed for bytes just read into p, without the copy when it can
// be avoided: when the machine holds no unparsed input (HasInput is
// false), it keeps p's backing array as its input buffer; otherwise it
// appends p to the bytes it holds. Either way the caller gives p up: it
// must not touch p's array again, unless ReleaseInput hands it back. The
// errors are Feed's.
func (c *Conn) Adopt(p []byte) error { return c.take(p, true) }

// take is Feed (keep false) and Adopt (keep true): p's bytes join the
// input, and with keep, p's array becomes the input buffer when the
// machine holds no unparsed input.
func (c *Conn) take(p []byte, keep bool) error {
	if err := c.feedable(); err != nil || len(p) == 0 {
		return err
	}
	c.recvSinceTick = true
	if c.broken {
		return nil
	}
	c.compact()
	if keep && len(c.in) == 0 {
		c.in = p
		return nil
	}
	c.in = append(c.in, p...)
	return nil
}

// HasInput reports whether unparsed input is buffered: the start of a
// frame whose rest has not arrived yet (or, before NextEvent has parsed
// them, whole frames). A driver then reads into ReadBuffer, so that the
// frame completes in the machine's buffer, rather than into a fresh buffer
// for Adopt.
func (c *Conn) HasInput() bool { return c.unparsed() > 0 }

// unparsed returns how many buffered input bytes are still to be parsed.
func (c *Conn) unparsed() int {
	if c.broken || c.state == StateNew || c.state == StateClosed {
		return 0 // never to be parsed
	}
	return len(c.in) - c.inOff
}

// ReleaseInput hands the machine's input buffer to the caller, emptied
// (length 0), and forgets it, when the machine holds no unparsed input;
// otherwise (HasInput is true) it returns nil and keeps it. It also
// returns nil when the machine has no input buffer. Call it only once
// NextEvent has returned EventNone: the slices of earlier events may
// point into the buffer, and become invalid. The next Feed, ReadBuffer or
// Adopt starts a new buffer.
func (c *Conn) ReleaseInput() []byte {
	if c.unparsed() > 0 || c.in == nil {
		return nil
	}
	b := c.in[:0]
	c.in, c.inOff = nil, 0
	return b
}

// ReleaseOutbound hands the machine's outbound buffer to the caller, empty
// (length 0), and forgets it, when no outbound bytes are pending: the
// next command that sends something allocates a new one. It returns nil
// when bytes are pending (write them first) or the machine has no
// outbound buffer.
func (c *Conn) ReleaseOutbound() []byte {
	if len(c.out) > 0 || c.out == nil {
		return nil
	}
	b := c.out
	c.out = nil
	return b
}

// Trim drops the spare capacity the machine keeps for a busy connection:
// the event queue's array, the Publishes arena, and the content buffers of
// channels that are not in the middle of a message (the input and outbound
// buffers have ReleaseInput and ReleaseOutbound). A driver calls it when
// the connection has gone quiet, so that an idle connection holds little;
// the next burst allocates them again. Call it only once NextEvent has
// returned EventNone: the slices of earlier events become invalid.
func (c *Conn) Trim() {
	if c.events.head == len(c.events.buf) {
		c.events.buf, c.events.head = nil, 0
	}
	if len(c.pubs) == 0 {
		c.pubs = nil
	}
	for _, ch := range c.channels {
		if ch != nil && ch.expect == expectMethod {
			ch.asm = nil
		}
	}
}

// ReadBuffer is Feed without the copy, for a caller that reads from its
// socket straight into the machine's input buffer: it returns at least min
// bytes of free space at the end of that buffer; read into it, then call
// Received with the count. Like Feed, it invalidates the slices of earlier
// events. Nothing else may be called between ReadBuffer and Received but
// commands, AppendOutbound, Deadline and HandleTimeout.
func (c *Conn) ReadBuffer(min int) []byte {
	c.compact()
	if cap(c.in)-len(c.in) < min {
		grown := make([]byte, len(c.in), max(2*cap(c.in), len(c.in)+min))
		copy(grown, c.in)
		c.in = grown
	}
	return c.in[len(c.in):cap(c.in)]
}

// Received records that n bytes were read into the slice ReadBuffer
// returned, as Feed would.
func (c *Conn) Received(n int) error {
	if err := c.feedable(); err != nil || n == 0 {
		return err
	}
	if n < 0 || n > cap(c.in)-len(c.in) {
		return fmt.Errorf("amqp: Received(%d) with %d bytes of ReadBuffer space", n, cap(c.in)-len(c.in))
	}
	c.recvSinceTick = true
	if c.broken {
		return nil
	}
	c.in = c.in[:len(c.in)+n]
	return nil
}

func (c *Conn) feedable() error {
	switch c.state {
	case StateNew:
		return ErrNotStarted
	case StateClosed:
		return c.closedErr()
	}
	return nil
}

// compact drops the parsed bytes from the front of the input buffer.
func (c *Conn) compact() {
	if c.inOff > 0 {
		n := copy(c.in, c.in[c.inOff:])
		c.in, c.inOff = c.in[:n], 0
		if n == 0 && cap(c.in) > 4*int(c.readMax) {
			c.in = nil // do not keep a burst's buffer forever
		}
	}
}

// FeedEOF tells the machine the peer closed its side of the stream. Frames
// fed before it still count (the peer's last words are often its
// connection.close): the end of the stream is acted on once NextEvent has
// parsed every complete frame buffered.
func (c *Conn) FeedEOF() {
	switch c.state {
	case StateNew, StateClosed:
		return
	}
	c.eof = true
}

// handleEOF acts on the end of the stream, after the last complete frame.
func (c *Conn) handleEOF() {
	switch c.state {
	case StateNew, StateClosed:
		return
	case StateClosing:
		c.finish(c.err)
	case StateAwaitStart, StateAwaitTune, StateAwaitOpenOK:
		err := fmt.Errorf("amqp: server closed the connection during the handshake (%s): %w", c.state, ErrConnectionLost)
		if c.state == StateAwaitTune {
			err = fmt.Errorf("amqp: server closed the connection after %s authentication (refused credentials?): %w", c.Mechanism(), ErrConnectionLost)
		}
		c.fail(err)
	default:
		c.fail(ErrConnectionLost)
	}
}

// NextEvent returns the next event, or one of kind EventNone when there is
// nothing more to report until more input, a command or a timeout. The
// slices of the events it returned before become invalid.
func (c *Conn) NextEvent() Event {
	if c.events.empty() {
		c.resetPublished()
	}
	for {
		if e := c.events.pop(); e != nil {
			return *e
		}
		if c.step() {
			continue
		}
		if !c.eof || c.state == StateClosed {
			return Event{}
		}
		c.eof = false
		c.handleEOF()
	}
}

// resetPublished empties the arena that the Publishes of events point
// into. Only when no event is queued: a queued event's Publishes must stay
// as they are until it has been returned and the caller has moved on. A
// burst's large arena is dropped rather than kept by an idle connection,
// and the refs are cleared so that the caller's values can be collected.
func (c *Conn) resetPublished() {
	if len(c.pubs) == 0 {
		return
	}
	if cap(c.pubs) > maxIdlePublishes {
		c.pubs = nil
		return
	}
	clear(c.pubs)
	c.pubs = c.pubs[:0]
}

// publishesFrom returns the arena's entries from start on, capped so that
// an append by the caller cannot overwrite a later event's entries; nil
// when there are none.
func (c *Conn) publishesFrom(start int) []Published {
	if start == len(c.pubs) {
		return nil
	}
	return c.pubs[start:len(c.pubs):len(c.pubs)]
}

// AppendOutbound appends every pending outbound byte to dst and returns
// the extended slice: out = c.AppendOutbound(out[:0]).
func (c *Conn) AppendOutbound(dst []byte) []byte {
	dst = append(dst, c.out...)
	if cap(c.out) > 4<<20 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	return dst
}

// Deadline returns when HandleTimeout must be called next; the zero time
// means no timer is needed. A deadline in the past means "now".
func (c *Conn) Deadline() time.Time {
	if c.state == StateNew || c.state == StateClosed {
		return time.Time{}
	}
	if c.armClose {
		return c.now
	}
	var d time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	if c.state < StateOpen {
		earliest(c.handshakeAt)
	}
	if c.state == StateClosing {
		earliest(c.closeAt)
	}
	earliest(c.hbNext)
	if c.closingChans > 0 {
		for _, ch := range c.channels {
			if ch != nil && ch.state == ChannelClosing {
				earliest(ch.closeAt)
			}
		}
	}
	return d
}

// HandleTimeout passes the current time in. Calls before Deadline are
// harmless.
func (c *Conn) HandleTimeout(now time.Time) {
	if c.state == StateNew || c.state == StateClosed {
		return
	}
	c.now = now
	if c.armClose {
		c.armClose = false
		if c.state == StateClosing && c.closeAt.IsZero() {
			c.closeAt = now.Add(c.cfg.CloseTimeout)
		}
		for _, ch := range c.channels {
			if ch != nil && ch.state == ChannelClosing && ch.closeAt.IsZero() {
				ch.closeAt = now.Add(c.cfg.CloseTimeout)
			}
		}
	}
	if c.state < StateOpen && !now.Before(c.handshakeAt) {
		c.fail(fmt.Errorf("%w after %v (in %s)", ErrHandshakeTimeout, c.cfg.HandshakeTimeout, c.state))
		return
	}
	if c.state == StateClosing && !c.closeAt.IsZero() && !now.Before(c.closeAt) {
		if c.err == nil {
			c.finish(fmt.Errorf("%w for connection.close", ErrCloseTimeout))
		} else {
			c.finish(c.err)
		}
		return
	}
	if c.closingChans > 0 {
		for _, ch := range c.channels {
			if ch != nil && ch.state == ChannelClosing && !ch.closeAt.IsZero() && !now.Before(ch.closeAt) {
				// Keep the id out of use (a late close-ok must still find
				// it) but let the user move on.
				c.closingChans--
				ch.state = ChannelAbandoned
				c.channelGone(ch, fmt.Errorf("%w for channel.close on channel %d", ErrCloseTimeout, ch.id))
			}
		}
	}
	if !c.hbNext.IsZero() && !now.Before(c.hbNext) {
		c.heartbeatTick(now)
	}
}

// heartbeatTick runs every half heartbeat interval: it sends a heartbeat
// when nothing else went out since the last tick (as RabbitMQ and its
// clients do), and declares the peer dead when nothing came in for
// HeartbeatMisses intervals.
func (c *Conn) heartbeatTick(now time.Time) {
	interval := c.tuning.Heartbeat
	if !c.sentSinceTick && c.state != StateClosing {
		c.out = frames.AppendHeartbeat(c.out)
		c.trace(Sent, 0, "heartbeat")
	}
	c.sentSinceTick = false
	if c.recvSinceTick {
		c.lastRecv, c.recvSinceTick = now, false
	} else if now.Sub(c.lastRecv) >= time.Duration(c.cfg.HeartbeatMisses)*interval {
		c.fail(fmt.Errorf("%w for %v (%d × %v)", ErrHeartbeatTimeout, now.Sub(c.lastRecv), c.cfg.HeartbeatMisses, interval))
		return
	}
	c.hbNext = now.Add(interval / 2)
}

func (c *Conn) closedErr() error {
	if c.err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, c.err)
	}
	return ErrClosed
}

func (c *Conn) trace(dir Direction, ch uint16, what string) {
	if c.cfg.Trace != nil {
		c.cfg.Trace(dir, ch, what)
	}
}

// sendMethod queues one method frame.
func (c *Conn) sendMethod(ch uint16, m frames.Method) error {
	out, err := frames.AppendMethod(c.out, ch, m)
	if err != nil {
		return err
	}
	c.out = out
	c.sentSinceTick = true
	if c.cfg.Trace != nil {
		c.trace(Sent, ch, describe(m))
	}
	return nil
}

// describe formats a method for Config.Trace, with credentials and
// secrets replaced so that a trace never shows a password.
func describe(m frames.Method) string {
	switch m := m.(type) {
	case *frames.ConnectionStartOK:
		r := *m
		r.Response = redacted(r.Response)
		return fmt.Sprintf("%s %+v", m.Key(), r)
	case *frames.ConnectionSecureOK:
		return fmt.Sprintf("%s {Response:%s}", m.Key(), redacted(m.Response))
	case *frames.ConnectionUpdateSecret:
		return fmt.Sprintf("%s {NewSecret:%s Reason:%s}", m.Key(), redacted(m.NewSecret), m.Reason)
	}
	return fmt.Sprintf("%s %+v", m.Key(), m)
}

func redacted(s string) string { return fmt.Sprintf("<%d bytes redacted>", len(s)) }

// step parses and handles one frame; it reports false when no complete
// frame is buffered or the connection is past parsing.
func (c *Conn) step() bool {
	if c.state == StateNew || c.state == StateClosed || c.broken {
		return false
	}
	f, n, err := frames.ReadFrame(c.in[c.inOff:], c.readMax)
	if err != nil {
		c.broken = true
		c.in, c.inOff = c.in[:0], 0 // never to be parsed
		if errors.Is(err, frames.ErrProtocolMismatch) {
			// The server answered our protocol header with its own and
			// will close: there is no AMQP connection to close politely.
			c.fail(fmt.Errorf("amqp: the server refused AMQP 0-9-1: %w", err))
			return true
		}
		c.violationErr(err)
		return true
	}
	if n == 0 {
		return false
	}
	c.inOff += n
	switch {
	case f.Type == frames.FrameHeartbeat:
		c.trace(Received, 0, "heartbeat")
	case f.Channel == 0:
		c.handleConnFrame(f)
	default:
		c.handleChannelFrame(f)
	}
	return true
}

// violation closes the connection because the peer broke the protocol:
// connection.close goes out with code, every channel ends, and the
// machine waits for close-ok.
func (c *Conn) violation(code proto.ReplyCode, key frames.MethodKey, format string, a ...any) {
	err := &proto.ConnectionError{
		Reply:  proto.Reply{Code: code, Text: fmt.Sprintf(format, a...), ClassID: key.ClassID(), MethodID: key.MethodID()},
		Origin: proto.ByLocal,
	}
	c.closeWith(err)
}

// violationErr is violation for a codec error.
func (c *Conn) violationErr(err error) {
	var fe *frames.Error
	if errors.As(err, &fe) {
		c.violation(fe.Code, frames.Key(fe.ClassID, fe.MethodID), "%v", fe.Err)
		return
	}
	c.violation(proto.InternalError, 0, "%v", err)
}

// closeWith sends connection.close for err's reply and enters Closing.
func (c *Conn) closeWith(err *proto.ConnectionError) {
	if c.state == StateClosing || c.state == StateClosed {
		return
	}
	text := err.Text
	if len(text) > 255 {
		text = text[:255]
	}
	_ = c.sendMethod(0, &frames.ConnectionClose{ReplyCode: uint16(err.Code), ReplyText: text, ClassID: err.ClassID, MethodID: err.MethodID})
	c.enterClosing(err)
}

func (c *Conn) enterClosing(err error) {
	c.state = StateClosing
	c.err = err
	c.armClose = true
	c.hbNext = time.Time{}
	c.closeAllChannels(err)
}

// fail ends the connection at once (no close handshake is possible).
func (c *Conn) fail(err error) {
	if c.state == StateClosed {
		return
	}
	c.err = err
	c.closeAllChannels(err)
	c.finish(err)
}

// finish enters Closed and reports it.
func (c *Conn) finish(err error) {
	if c.state == StateClosed {
		return
	}
	c.closeAllChannels(err)
	c.state = StateClosed
	c.err = err
	c.hbNext, c.closeAt, c.handshakeAt = time.Time{}, time.Time{}, time.Time{}
	c.armClose = false
	c.failRequests(0, &c.conn0, err)
	c.events.push(Event{Kind: EventClosed, Err: err})
}

// failRequests reports every request pending in q (on channel id) failed
// with err, or ErrClosed for a clean close, in request order, and empties
// q.
func (c *Conn) failRequests(id uint16, q *requestFIFO, err error) {
	for _, r := range q.buf[q.head:] {
		c.failRequest(id, r, err)
	}
	q.reset()
}

// failRequest reports request r (on channel id) failed with err, or
// ErrClosed for a clean close. A request without a token (channel.open)
// is not reported: EventChannelClosed says it all.
func (c *Conn) failRequest(id uint16, r request, err error) {
	if r.token == 0 {
		return
	}
	if err == nil {
		err = ErrClosed
	}
	c.events.push(Event{Kind: EventReply, Channel: id, Token: r.token, Request: r.key, Err: err})
}

// newToken returns a token never handed out before.
func (c *Conn) newToken() Token {
	c.tokenSeq++
	return c.tokenSeq
}

// Close starts a clean client-initiated close: connection.close goes out,
// every channel ends, and EventClosed (Err nil) follows the server's
// close-ok, or an error if it does not come within CloseTimeout. During
// the handshake there is nothing to close politely: Close abandons it and
// reports EventClosed with an error wrapping ErrClosed.
func (c *Conn) Close(reply proto.Reply) error {
	switch c.state {
	case StateNew:
		c.finish(nil)
		return nil
	case StateAwaitStart, StateAwaitTune, StateAwaitOpenOK:
		// No connection to close yet: abandon the handshake.
		c.fail(fmt.Errorf("%w during the handshake", ErrClosed))
		return nil
	case StateClosing, StateClosed:
		return c.closedErr()
	}
	if reply.Code == 0 {
		reply.Code = proto.ReplySuccess
	}
	if len(reply.Text) > 255 {
		reply.Text = reply.Text[:255]
	}
	if err := c.sendMethod(0, &frames.ConnectionClose{ReplyCode: uint16(reply.Code), ReplyText: reply.Text, ClassID: reply.ClassID, MethodID: reply.MethodID}); err != nil {
		return err
	}
	c.enterClosing(nil)
	return nil
}

// handleConnFrame handles a frame on channel 0: the handshake, close, and
// the connection-level notifications.
func (c *Conn) handleConnFrame(f frames.Frame) {
	if f.Type != frames.FrameMethod {
		c.violation(proto.UnexpectedFrame, 0, "%s frame on channel 0", f.Type)
		return
	}
	m, err := c.parser.ParseMethod(0, f.Payload)
	if err != nil {
		c.violationErr(err)
		return
	}
	if c.cfg.Trace != nil {
		c.trace(Received, 0, describe(m))
	}
	switch m := m.(type) {
	case *frames.ConnectionClose:
		// A close from the peer is answered in every state, also when it
		// crosses ours.
		_ = c.sendMethod(0, &frames.ConnectionCloseOK{})
		err := &proto.ConnectionError{Reply: proto.Reply{Code: proto.ReplyCode(m.ReplyCode), Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID}, Origin: proto.ByPeer}
		if c.state == StateClosing {
			c.finish(c.err)
			return
		}
		c.fail(err)
		return
	case *frames.ConnectionCloseOK:
		if c.state == StateClosing {
			c.finish(c.err)
			return
		}
	}
	if c.state == StateClosing {
		return // discard everything but close and close-ok
	}
	switch c.state {
	case StateAwaitStart:
		if m, ok := m.(*frames.ConnectionStart); ok {
			c.handleStart(m)
			return
		}
	case StateAwaitTune:
		switch m := m.(type) {
		case *frames.ConnectionSecure:
			resp, err := c.auth.Challenge([]byte(m.Challenge))
			if err != nil {
				c.fail(fmt.Errorf("amqp: %s challenge: %w", c.auth.Mechanism(), err))
				return
			}
			_ = c.sendMethod(0, &frames.ConnectionSecureOK{Response: string(resp)})
			return
		case *frames.ConnectionTune:
			c.handleTune(m)
			return
		}
	case StateAwaitOpenOK:
		if _, ok := m.(*frames.ConnectionOpenOK); ok {
			c.state = StateOpen
			c.events.push(Event{Kind: EventConnected})
			return
		}
	case StateOpen:
		switch m := m.(type) {
		case *frames.ConnectionBlocked:
			c.blocked = true
			c.events.push(Event{Kind: EventBlocked, Reason: m.Reason})
			return
		case *frames.ConnectionUnblocked:
			c.blocked = false
			c.events.push(Event{Kind: EventUnblocked})
			return
		case *frames.ConnectionUpdateSecretOK:
			if req, ok := c.conn0.front(); ok && frames.AcceptsReply(req.key, m.Key()) {
				c.conn0.pop()
				c.events.push(Event{Kind: EventReply, Token: req.token, Request: req.key, Method: &frames.ConnectionUpdateSecretOK{}})
				return
			}
		}
	}
	c.violation(proto.CommandInvalid, m.Key(), "unexpected %s in state %s", m.Key(), c.state)
}

func (c *Conn) handleStart(m *frames.ConnectionStart) {
	if m.VersionMajor != 0 || m.VersionMinor != 9 {
		c.fail(fmt.Errorf("amqp: server speaks protocol %d-%d, not 0-9: %w", m.VersionMajor, m.VersionMinor, frames.ErrProtocolMismatch))
		return
	}
	// Kept encoded, in a buffer of its exact size: they stay for the
	// connection's life (an idle connection's footprint counts).
	props, _ := proto.AppendTableFields(nil, m.ServerProperties) // it decoded, so it encodes
	c.serverProps = append(make([]byte, 0, len(props)), props...)
	offered := strings.Fields(m.Mechanisms)
	for _, a := range c.cfg.Auth {
		for _, name := range offered {
			if name == a.Mechanism() {
				c.auth = a
				break
			}
		}
		if c.auth != nil {
			break
		}
	}
	if c.auth == nil {
		var ours []string
		for _, a := range c.cfg.Auth {
			ours = append(ours, a.Mechanism())
		}
		c.fail(fmt.Errorf("%w: server offers %q, we have %q", ErrNoMechanism, m.Mechanisms, strings.Join(ours, " ")))
		return
	}
	resp, err := c.auth.Response()
	if err != nil {
		c.fail(fmt.Errorf("amqp: %s response: %w", c.auth.Mechanism(), err))
		return
	}
	locale := c.cfg.Locale
	if locales := strings.Fields(m.Locales); len(locales) > 0 && !contains(locales, locale) {
		locale = locales[0]
	}
	if err := c.sendMethod(0, &frames.ConnectionStartOK{
		ClientProperties: c.cfg.clientProperties(),
		Mechanism:        c.auth.Mechanism(),
		Response:         string(resp),
		Locale:           locale,
	}); err != nil {
		c.fail(fmt.Errorf("amqp: encoding start-ok: %w", err))
		return
	}
	c.state = StateAwaitTune
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Conn) handleTune(m *frames.ConnectionTune) {
	ours := uint16(0)
	if c.cfg.ChannelMax != NoLimit {
		ours = c.cfg.ChannelMax
	}
	c.tuning.ChannelMax = negotiate(ours, m.ChannelMax)
	if c.tuning.ChannelMax == 0 {
		c.tuning.ChannelMax = NoLimit
	}
	c.tuning.FrameMax = negotiate(c.cfg.FrameMax, m.FrameMax)
	if c.tuning.FrameMax != 0 && c.tuning.FrameMax < frames.FrameMinSize {
		c.tuning.FrameMax = frames.FrameMinSize
	}
	// Heartbeats: none when we ask for none (tune-ok carries 0, which
	// RabbitMQ honours), else the lower non-zero interval of the two.
	var hb uint16
	if c.cfg.Heartbeat > 0 {
		hb = negotiate(uint16(min(max(c.cfg.Heartbeat/time.Second, 1), 0xFFFF)), m.Heartbeat)
	}
	c.tuning.Heartbeat = time.Duration(hb) * time.Second
	if c.tuning.FrameMax != 0 {
		c.readMax = c.tuning.FrameMax
	}
	_ = c.sendMethod(0, &frames.ConnectionTuneOK{ChannelMax: c.tuning.ChannelMax, FrameMax: c.tuning.FrameMax, Heartbeat: hb})
	if err := c.sendMethod(0, &frames.ConnectionOpen{VirtualHost: c.cfg.VirtualHost}); err != nil {
		c.fail(fmt.Errorf("amqp: virtual host: %w", err))
		return
	}
	if hb > 0 {
		c.lastRecv = c.now
		c.hbNext = c.now.Add(c.tuning.Heartbeat / 2)
	}
	c.state = StateAwaitOpenOK
}

// UpdateSecret sends connection.update-secret (for example a refreshed
// OAuth 2 token) and returns the request's token: an EventReply on
// channel 0 with that Token follows, with connection.update-secret-ok, or
// failed (Err set) if the connection closes first. It returns 0 with an
// error, sending nothing, when the connection is not open.
func (c *Conn) UpdateSecret(secret, reason string) (Token, error) {
	if c.state != StateOpen {
		return 0, c.notOpen()
	}
	m := &frames.ConnectionUpdateSecret{NewSecret: secret, Reason: reason}
	if err := c.sendMethod(0, m); err != nil {
		return 0, err
	}
	tok := c.newToken()
	c.conn0.push(request{key: m.Key(), token: tok})
	return tok, nil
}

func (c *Conn) notOpen() error {
	if c.state == StateClosing || c.state == StateClosed {
		return c.closedErr()
	}
	return ErrNotOpen
}
