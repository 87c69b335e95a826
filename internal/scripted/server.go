// Package scripted is an AMQP 0-9-1 server for tests, listening on
// 127.0.0.1: it plays a broker's part of the handshake (PLAIN or
// AMQPLAIN, any credentials, no heartbeats) and then answers each method
// the client sends as a broker would, or as a script says instead: never
// answering, or no longer reading the socket. Options add faults of the
// whole connection: a handshake never begun, every byte written slowly,
// a close never answered, bytes of the test's choosing after open-ok. It produces the faults a
// real broker will not, for tests of the client and the command that
// need a socket; the protocol core's own tests script their peers
// without one.
package scripted

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// Action is what the server does with one method the client sent.
type Action int

const (
	// Answer replies as a broker would: the method's -ok with zero
	// fields (queue.declare-ok names the queue, basic.get finds the
	// queue empty, a confirm-mode publish is acked).
	Answer Action = iota
	// Ignore never replies to the method, and goes on reading.
	Ignore
	// StopReading stops reading the socket from this method on: the
	// client's writes fill the socket's buffers, then block.
	StopReading
)

// Options configure a Server.
type Options struct {
	// Script decides what to do with each method after the handshake;
	// nil answers everything.
	Script func(m frames.Method) Action
	// BlockAfterOpen sends connection.blocked right after open-ok, and
	// never connection.unblocked.
	BlockAfterOpen bool
	// SilentHandshake never sends connection.start: the server reads
	// whatever the client sends and answers nothing.
	SilentHandshake bool
	// Trickle, when positive, makes the server write one byte at a time,
	// waiting Trickle before each.
	Trickle time.Duration
	// IgnoreClose never answers connection.close (and goes on reading).
	IgnoreClose bool
	// AfterOpen is written as it is right after open-ok (and
	// connection.blocked): a malformed frame, say.
	AfterOpen []byte
}

// Server is a scripted AMQP server. Close stops it and every connection.
type Server struct {
	opts Options
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// Listen starts a server on a free port of 127.0.0.1.
func Listen(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is an amqp:// URI of the server, with guest credentials.
func (s *Server) URL() string { return "amqp://guest:guest@" + s.Addr() + "/" }

// Close stops listening, closes every connection and waits for the
// server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			sc := &conn{c: c, opts: s.opts, done: s.done, confirms: make(map[uint16]uint64)}
			_ = sc.serve()
		}()
	}
}

// conn is one client's connection.
type conn struct {
	c        net.Conn
	opts     Options
	done     <-chan struct{} // closed by Server.Close
	buf      []byte
	confirms map[uint16]uint64 // channels in confirm mode: publishes so far
}

var errStop = errors.New("scripted: stopped reading")

func (sc *conn) serve() error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(sc.c, hdr); err != nil {
		return err
	}
	if sc.opts.SilentHandshake {
		_, err := io.Copy(io.Discard, sc.c)
		return err
	}
	if err := sc.send(0, &frames.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
		ServerProperties: proto.Table{{Name: "product", Value: proto.String("scripted")}}}); err != nil {
		return err
	}
	for _, want := range []string{"connection.start-ok", "connection.tune-ok", "connection.open"} {
		if want == "connection.tune-ok" {
			if err := sc.send(0, &frames.ConnectionTune{ChannelMax: 64, FrameMax: 131072}); err != nil {
				return err
			}
		}
		if _, _, err := sc.readMethod(); err != nil {
			return fmt.Errorf("scripted: reading %s: %w", want, err)
		}
	}
	if err := sc.send(0, &frames.ConnectionOpenOK{}); err != nil {
		return err
	}
	if sc.opts.BlockAfterOpen {
		if err := sc.send(0, &frames.ConnectionBlocked{Reason: "scripted: blocked for good"}); err != nil {
			return err
		}
	}
	if len(sc.opts.AfterOpen) > 0 {
		if err := sc.write(sc.opts.AfterOpen); err != nil {
			return err
		}
	}
	for {
		ch, m, err := sc.readMethod()
		if err != nil {
			return err
		}
		action := Answer
		if sc.opts.Script != nil {
			action = sc.opts.Script(m)
		}
		switch action {
		case Ignore:
			continue
		case StopReading:
			// Hold the connection open, unread, until the server closes.
			<-sc.done
			return errStop
		}
		if err := sc.answer(ch, m); err != nil {
			return err
		}
	}
}

// answer replies to m on channel ch as a broker would.
func (sc *conn) answer(ch uint16, m frames.Method) error {
	var reply frames.Method
	switch m := m.(type) {
	case *frames.ChannelOpen:
		reply = &frames.ChannelOpenOK{}
	case *frames.ChannelClose:
		reply = &frames.ChannelCloseOK{}
	case *frames.ConnectionClose:
		if sc.opts.IgnoreClose {
			return nil
		}
		_ = sc.send(0, &frames.ConnectionCloseOK{})
		return io.EOF
	case *frames.BasicQos:
		reply = &frames.BasicQosOK{}
	case *frames.ConfirmSelect:
		sc.confirms[ch] = 0
		if m.NoWait {
			return nil
		}
		reply = &frames.ConfirmSelectOK{}
	case *frames.ExchangeDeclare:
		reply = &frames.ExchangeDeclareOK{}
	case *frames.ExchangeDelete:
		reply = &frames.ExchangeDeleteOK{}
	case *frames.ExchangeBind:
		reply = &frames.ExchangeBindOK{}
	case *frames.ExchangeUnbind:
		reply = &frames.ExchangeUnbindOK{}
	case *frames.QueueDeclare:
		reply = &frames.QueueDeclareOK{Queue: m.Queue}
	case *frames.QueueBind:
		reply = &frames.QueueBindOK{}
	case *frames.QueueUnbind:
		reply = &frames.QueueUnbindOK{}
	case *frames.QueuePurge:
		reply = &frames.QueuePurgeOK{}
	case *frames.QueueDelete:
		reply = &frames.QueueDeleteOK{}
	case *frames.BasicGet:
		reply = &frames.BasicGetEmpty{}
	case *frames.BasicConsume:
		reply = &frames.BasicConsumeOK{ConsumerTag: m.ConsumerTag}
	case *frames.BasicCancel:
		reply = &frames.BasicCancelOK{ConsumerTag: m.ConsumerTag}
	case *frames.BasicPublish:
		n, confirming := sc.confirms[ch]
		if !confirming {
			return nil
		}
		sc.confirms[ch] = n + 1
		reply = &frames.BasicAck{DeliveryTag: n + 1}
	default:
		return nil // acks and the like need no answer
	}
	return sc.send(ch, reply)
}

func (sc *conn) send(ch uint16, m frames.Method) error {
	out, err := frames.AppendMethod(nil, ch, m)
	if err != nil {
		return err
	}
	return sc.write(out)
}

// write writes b, a byte at a time under Trickle; it gives up when the
// server closes.
func (sc *conn) write(b []byte) error {
	if sc.opts.Trickle <= 0 {
		_, err := sc.c.Write(b)
		return err
	}
	for i := range b {
		select {
		case <-time.After(sc.opts.Trickle):
		case <-sc.done:
			return errStop
		}
		if _, err := sc.c.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// readMethod returns the next method frame's channel and method, skipping
// content and heartbeat frames.
func (sc *conn) readMethod() (uint16, frames.Method, error) {
	tmp := make([]byte, 32<<10)
	for {
		f, n, err := frames.ReadFrame(sc.buf, 0)
		if err != nil {
			return 0, nil, err
		}
		if n == 0 {
			k, err := sc.c.Read(tmp)
			sc.buf = append(sc.buf, tmp[:k]...)
			if err != nil {
				return 0, nil, err
			}
			continue
		}
		payload := append([]byte(nil), f.Payload...)
		sc.buf = sc.buf[n:]
		if f.Type != frames.FrameMethod {
			continue
		}
		m, err := frames.DecodeMethod(f.Channel, payload)
		return f.Channel, m, err
	}
}
