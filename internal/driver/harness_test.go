package driver

// The driver's test harness: a scripted broker on the server end of a
// netpipe, a socket double that records who read and how each write was
// made, and a minimal Handler. Tests run inside testing/synctest bubbles,
// so no test sleeps and every count is exact: a goroutine switch happens
// only when the one running blocks.

import (
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/proto/statemachine"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// peer plays the broker.
type peer struct {
	t    *testing.T
	nc   *netpipe.Conn
	quit <-chan struct{} // closed when the test ends
	buf  []byte
	tmp  []byte
}

func (p *peer) readFrame() (frames.Frame, error) {
	if p.tmp == nil {
		p.tmp = make([]byte, 64<<10)
	}
	for {
		f, n, err := frames.ReadFrame(p.buf, 0)
		if err != nil {
			return frames.Frame{}, err
		}
		if n > 0 {
			f.Payload = append([]byte(nil), f.Payload...)
			p.buf = p.buf[n:]
			return f, nil
		}
		m, err := p.nc.Read(p.tmp)
		p.buf = append(p.buf, p.tmp[:m]...)
		if err != nil {
			return frames.Frame{}, err
		}
	}
}

// readMethod returns the next method frame, skipping other frames.
func (p *peer) readMethod() (frames.Method, error) {
	for {
		f, err := p.readFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == frames.FrameMethod {
			return frames.DecodeMethod(f.Channel, f.Payload)
		}
	}
}

func (p *peer) send(ch uint16, m frames.Method) {
	out, err := frames.AppendMethod(nil, ch, m)
	require.NoError(p.t, err)
	_, _ = p.nc.Write(out)
}

// handshake answers the client's handshake, proposing heartbeat seconds.
func (p *peer) handshake(heartbeat uint16) error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(p.nc, hdr); err != nil {
		return err
	}
	p.send(0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US"})
	for _, want := range []frames.MethodKey{frames.MethodConnectionStartOK, frames.MethodConnectionTuneOK, frames.MethodConnectionOpen} {
		if want == frames.MethodConnectionTuneOK {
			p.send(0, &frames.ConnectionTune{ChannelMax: 64, FrameMax: 131072, Heartbeat: heartbeat})
		}
		if _, err := p.readMethod(); err != nil {
			return err
		}
	}
	p.send(0, &frames.ConnectionOpenOK{})
	return nil
}

// wait waits for c, or the end of the test; it reports whether c came.
func (p *peer) wait(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-p.quit:
		return false
	}
}

// answerOpen answers channel.open on channel 1 and, with confirm,
// confirm.select.
func (p *peer) answerOpen(confirm bool) error {
	if _, err := p.readMethod(); err != nil {
		return err
	}
	p.send(1, &frames.ChannelOpenOK{})
	if confirm {
		if _, err := p.readMethod(); err != nil {
			return err
		}
		p.send(1, &frames.ConfirmSelectOK{})
	}
	return nil
}

// serve answers channel.open, confirm.select, basic.qos and
// connection.close; calls onPublish with each publish's body as it
// completes (acking it when onPublish returns true); and returns when the
// client closes or the stream ends.
func (p *peer) serve(onPublish func(seq uint64, body []byte) bool) {
	var tag uint64
	var body []byte
	var want uint64
	for {
		f, err := p.readFrame()
		if err != nil {
			return
		}
		switch f.Type {
		case frames.FrameHeader:
			var h frames.ContentHeader
			if h.Parse(f.Channel, f.Payload) != nil {
				return
			}
			want, body = h.BodySize, body[:0]
		case frames.FrameBody:
			body = append(body, f.Payload...)
			if uint64(len(body)) == want {
				tag++
				if onPublish == nil || onPublish(tag, body) {
					p.send(f.Channel, &frames.BasicAck{DeliveryTag: tag})
				}
			}
		case frames.FrameMethod:
			m, err := frames.DecodeMethod(f.Channel, f.Payload)
			if err != nil {
				return
			}
			switch m.(type) {
			case *frames.ChannelOpen:
				p.send(f.Channel, &frames.ChannelOpenOK{})
			case *frames.ConfirmSelect:
				p.send(f.Channel, &frames.ConfirmSelectOK{})
			case *frames.BasicQos:
				p.send(f.Channel, &frames.BasicQosOK{})
			case *frames.ConnectionClose:
				p.send(0, &frames.ConnectionCloseOK{})
				_, _ = io.Copy(io.Discard, p.nc)
				return
			}
		}
	}
}

// recSocket is the socket double: the real socket of a netpipe end (fast,
// like a TCP socket), recording which goroutine read and how each write
// was made. It tells a waiter's read from the reader goroutine's by the
// function that called it.
type recSocket struct {
	socket
	mu          sync.Mutex
	readerReads int // reads made by the reader goroutine
	waiterReads int // reads made by goroutines in Await
	direct      int // tryWrite calls that wrote something (direct writes)
	partial     int // direct writes the socket took only part of
	written     int // writes by the writer goroutine
}

func (s *recSocket) read(buf []byte) ([]byte, int, error) {
	waiter := calledFrom("(*Driver).readFor")
	b, n, err := s.socket.read(buf)
	s.mu.Lock()
	if waiter {
		s.waiterReads++
	} else {
		s.readerReads++
	}
	s.mu.Unlock()
	return b, n, err
}

// tryWrite counts before writing: once the bytes are out, the peer may
// answer and the test look at the counts before this goroutine runs on.
func (s *recSocket) tryWrite(p []byte) (int, error) {
	s.mu.Lock()
	s.direct++
	s.mu.Unlock()
	n, err := s.socket.tryWrite(p)
	if n < len(p) {
		s.mu.Lock()
		s.partial++
		s.mu.Unlock()
	}
	return n, err
}

func (s *recSocket) write(p []byte) (int, error) {
	s.mu.Lock()
	s.written++
	s.mu.Unlock()
	return s.socket.write(p)
}

// counts is a snapshot of a recSocket's counters.
type counts struct{ readerReads, waiterReads, direct, partial, written int }

func (s *recSocket) counts() counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return counts{s.readerReads, s.waiterReads, s.direct, s.partial, s.written}
}

func (c counts) sub(o counts) counts {
	return counts{c.readerReads - o.readerReads, c.waiterReads - o.waiterReads, c.direct - o.direct, c.partial - o.partial, c.written - o.written}
}

// calledFrom reports whether a function whose name ends in fn is on the
// caller's stack.
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 32)
	frs := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frs.Next()
		if strings.HasSuffix(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// pending is one request or publish the test waits for.
type pending struct {
	done chan struct{}
	ack  bool
	err  error
}

func newPending() *pending { return &pending{done: make(chan struct{})} }

func (p *pending) resolve(ack bool, err error) {
	p.ack, p.err = ack, err
	close(p.done)
}

// testHandler is a minimal client: it resolves requests by token and
// publishes by ref, and queues deliveries for Perform, which hands them
// to onDelivery.
type testHandler struct {
	connected chan struct{}
	opened    chan struct{}
	requests  map[statemachine.Token]*pending
	queue     []uint64 // delivery tags for Perform
	closeErr  error

	onDelivery      func(tag uint64) // called by Perform
	checkPerform    bool             // check that Perform runs on the reader goroutine
	performOnReader bool             // every Perform ran on the reader goroutine
	performs        int
}

func (h *testHandler) Event(m *statemachine.Conn, e *statemachine.Event) bool {
	switch e.Kind {
	case statemachine.EventConnected:
		close(h.connected)
	case statemachine.EventChannelOpen:
		close(h.opened)
	case statemachine.EventReply:
		if p := h.requests[e.Token]; p != nil {
			delete(h.requests, e.Token)
			p.resolve(e.Err == nil, e.Err)
		}
	case statemachine.EventConfirm:
		for _, pub := range e.Publishes {
			if p, _ := pub.Ref.(*pending); p != nil {
				p.resolve(e.Ack, nil)
			}
		}
	case statemachine.EventChannelClosed:
		for _, pub := range e.Publishes {
			if p, _ := pub.Ref.(*pending); p != nil {
				p.resolve(false, e.Err)
			}
		}
	case statemachine.EventDelivery:
		h.queue = append(h.queue, e.Message.DeliveryTag)
		return true
	case statemachine.EventClosed:
		h.closeErr = e.Err
	}
	return false
}

func (h *testHandler) Perform() {
	h.performs++
	if h.checkPerform && !calledFrom("(*Driver).readLoop") {
		h.performOnReader = false
	}
	for _, tag := range h.queue {
		if h.onDelivery != nil {
			h.onDelivery(tag)
		}
	}
	h.queue = h.queue[:0]
}

// harness is a started driver connected to a scripted broker.
type harness struct {
	t    *testing.T
	d    *Driver
	h    *testHandler
	sock *recSocket
	srv  *netpipe.Conn
	ctx  context.Context
	wg   sync.WaitGroup
}

type harnessOptions struct {
	heartbeat  uint16 // seconds the broker proposes
	pipeBuffer int    // netpipe buffer per direction
	confirm    bool   // put channel 1 in confirm mode
	lendPeriod time.Duration
	plain      bool // no recording socket double and no check of where Perform runs (they allocate)
}

// newHarness starts a driver over a netpipe whose server end runs serve
// after the handshake (and, with opts.confirm, channel 1 in confirm
// mode), opens channel 1 and returns once the connection is open. Call it
// inside a synctest bubble; it closes the driver when the test ends.
func newHarness(t *testing.T, opts harnessOptions, serve func(p *peer)) *harness {
	t.Helper()
	client, server := netpipe.PipeWith(netpipe.Options{BufferSize: opts.pipeBuffer})
	hb := time.Duration(-1)
	if opts.heartbeat > 0 {
		hb = time.Duration(opts.heartbeat) * time.Second
	}
	m, err := statemachine.NewConn(statemachine.Config{
		Auth:      []statemachine.Authenticator{statemachine.PlainAuth{Username: "guest", Password: "guest"}},
		Heartbeat: hb,
	})
	require.NoError(t, err)
	th := &testHandler{connected: make(chan struct{}), opened: make(chan struct{}), requests: make(map[statemachine.Token]*pending), performOnReader: true}
	h := &harness{t: t, h: th, srv: server, ctx: context.Background()}
	th.checkPerform = !opts.plain
	var wrap func(socket) socket
	if !opts.plain {
		wrap = func(s socket) socket {
			h.sock = &recSocket{socket: s}
			return h.sock
		}
	}
	h.d = newDriver(client, m, th, Options{}, wrap)
	if opts.lendPeriod > 0 {
		h.d.lendPeriod = opts.lendPeriod
	}
	quit := make(chan struct{})
	p := &peer{t: t, nc: server, quit: quit}
	h.wg.Go(func() {
		defer server.Close()
		if p.handshake(opts.heartbeat) != nil {
			return
		}
		serve(p)
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		close(quit)
		_ = h.d.Close(ctx, proto.Reply{Code: proto.ReplySuccess})
		_ = server.Close()
		h.wg.Wait()
	})
	h.d.Start()
	h.open(opts.confirm)
	return h
}

// open waits for the handshake and opens channel 1, in confirm mode if
// asked.
func (h *harness) open(confirm bool) {
	h.t.Helper()
	require.NoError(h.t, h.d.Await(h.ctx, h.h.connected))
	m := h.d.Lock()
	id, err := m.OpenChannel()
	require.NoError(h.t, err)
	require.Equal(h.t, uint16(1), id)
	h.d.Unlock(FlushNow)
	require.NoError(h.t, h.d.Await(h.ctx, h.h.opened))
	if confirm {
		p := h.call(&frames.ConfirmSelect{})
		require.NoError(h.t, h.d.Await(h.ctx, p.done))
		require.NoError(h.t, p.err)
	}
}

// call sends a request on channel 1 and returns its pending reply.
func (h *harness) call(method frames.Method) *pending {
	h.t.Helper()
	p := newPending()
	m := h.d.Lock()
	tok, err := m.Call(1, method)
	require.NoError(h.t, err)
	h.h.requests[tok] = p
	h.d.Unlock(FlushNow)
	return p
}

// publish publishes body on channel 1, flushed as f, and returns its
// pending confirm (channel 1 must be in confirm mode).
func (h *harness) publish(f Flush, body []byte) *pending {
	h.t.Helper()
	p := newPending()
	m := h.d.Lock()
	_, err := m.Publish(1, &frames.BasicPublish{RoutingKey: "q"}, &proto.Properties{}, body, p)
	require.NoError(h.t, err)
	h.d.Unlock(f)
	return p
}

// confirmed publishes body and waits for its ack.
func (h *harness) confirmed(body []byte) {
	h.t.Helper()
	p := h.publish(FlushNow, body)
	require.NoError(h.t, h.d.Await(h.ctx, p.done))
	require.NoError(h.t, p.err)
	require.True(h.t, p.ack)
}

func (h *harness) owner() owner {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	return h.d.rowner
}

func seqBody(seq uint64, size int) []byte {
	body := make([]byte, size)
	binary.BigEndian.PutUint64(body, seq)
	return body
}
