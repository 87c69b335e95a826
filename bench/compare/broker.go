package main

// The scripted broker: a separate process (this binary, re-executed with
// serveEnv set) that speaks just enough AMQP 0-9-1 for the client-bound
// cases, using Warren's proto/frames codec. It is cheap on purpose, so
// that the client is the bottleneck:
//
//   - consume: after basic.consume-ok on a queue named "bench.<size>.<count>"
//     it streams <count> pre-encoded basic.deliver + header + body messages
//     with <size>-byte bodies from a pre-built buffer, patching the delivery
//     tags in place, in writes of about 256 KiB. Client acks are counted.
//   - publish: publishes are counted by looking at four bytes of each method
//     frame; in confirm mode the broker answers basic.ack multiple=true
//     every ackEvery publishes and whenever its read buffer drains.
//
// Every other method it needs gets its -ok reply. On stdin EOF it exits;
// after each connection it prints a "STATS {json}" line on stdout.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

const (
	serveEnv        = "WARREN_COMPARE_SCRIPTED_BROKER"
	brokerFrameMax  = 131072
	ackEvery        = 256       // confirm mode: ack at least every this many publishes
	streamChunkSize = 256 << 10 // bytes of pre-encoded deliveries per write
	readBufSize     = 256 << 10
)

// connStats is what the broker reports about one connection.
type connStats struct {
	Conn      int64  `json:"conn"`
	Published uint64 `json:"published"`
	Delivered uint64 `json:"delivered"`
	Acks      uint64 `json:"acks"`     // basic.ack received from the client
	Confirms  uint64 `json:"confirms"` // basic.ack frames sent in confirm mode
	Err       string `json:"err,omitempty"`
}

// serveIfChild runs the scripted broker and exits when this process was
// started as one; otherwise it returns. It also serves as the entry point
// of the idle-footprint children (idle.go).
func serveIfChild() {
	idleChildIfAsked()
	if os.Getenv(serveEnv) == "" {
		return
	}
	if err := serveBroker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scripted broker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveBroker(stdin io.Reader, stdout io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	fmt.Fprintf(stdout, "LISTEN %s\n", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, stdin) // the parent closes stdin to stop us
		ln.Close()
	}()
	var ids atomic.Int64
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			s := &brokerConn{nc: nc, stats: connStats{Conn: ids.Add(1)}}
			if err := s.serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.stats.Err = err.Error()
			}
			nc.Close()
			b, _ := json.Marshal(s.stats)
			outMu.Lock()
			fmt.Fprintf(stdout, "STATS %s\n", b)
			outMu.Unlock()
		}()
	}
}

type brokerConn struct {
	nc    net.Conn
	wmu   sync.Mutex // one writer at a time: the streamer or the reader's replies
	out   []byte
	stats connStats

	confirming bool
	unacked    int // publishes not yet confirmed
	streams    sync.WaitGroup
	streamErr  atomic.Value
}

func (s *brokerConn) send(ch uint16, m frames.Method) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	if s.out, err = frames.AppendMethod(s.out[:0], ch, m); err != nil {
		return err
	}
	_, err = s.nc.Write(s.out)
	return err
}

// serve runs the handshake and then the frame loop.
func (s *brokerConn) serve() error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(s.nc, hdr); err != nil {
		return err
	}
	if string(hdr) != frames.ProtocolHeader {
		return fmt.Errorf("bad protocol header %q", hdr)
	}
	caps := proto.Table{
		{Name: "publisher_confirms", Value: proto.Bool(true)},
		{Name: "exchange_exchange_bindings", Value: proto.Bool(true)},
		{Name: "basic.nack", Value: proto.Bool(true)},
		{Name: "consumer_cancel_notify", Value: proto.Bool(true)},
		{Name: "connection.blocked", Value: proto.Bool(true)},
		{Name: "authentication_failure_close", Value: proto.Bool(true)},
		{Name: "per_consumer_qos", Value: proto.Bool(true)},
	}
	if err := s.send(0, &frames.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: proto.Table{
			{Name: "product", Value: proto.String("warren-compare scripted broker")},
			{Name: "capabilities", Value: proto.TableValue(caps)},
		},
		Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
	}); err != nil {
		return err
	}

	buf := make([]byte, readBufSize)
	have := 0
	for {
		n, err := s.nc.Read(buf[have:])
		have += n
		if err != nil {
			return err
		}
		off := 0
		for {
			f, fn, err := frames.ReadFrame(buf[off:have], brokerFrameMax)
			if err != nil {
				return err
			}
			if fn == 0 {
				break
			}
			off += fn
			done, err := s.frame(f)
			if err != nil {
				return err
			}
			if done {
				s.streams.Wait()
				return nil
			}
		}
		if s.confirming && s.unacked > 0 { // the read buffer drained: confirm
			if err := s.confirm(); err != nil {
				return err
			}
		}
		have = copy(buf, buf[off:have])
		if have == len(buf) {
			return errors.New("frame larger than the read buffer")
		}
	}
}

func (s *brokerConn) confirm() error {
	s.unacked = 0
	s.stats.Confirms++
	return s.send(1, &frames.BasicAck{DeliveryTag: s.stats.Published, Multiple: true})
}

// frame handles one frame; done reports connection.close answered.
func (s *brokerConn) frame(f frames.Frame) (done bool, err error) {
	if f.Type != frames.FrameMethod {
		return false, nil // content of a publish, or a heartbeat
	}
	p := f.Payload
	if len(p) >= 4 {
		switch frames.Key(binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])) {
		case frames.MethodBasicPublish: // the hot path: count it, decode nothing
			s.stats.Published++
			if s.confirming {
				if s.unacked++; s.unacked >= ackEvery {
					return false, s.confirm()
				}
			}
			return false, nil
		case frames.MethodBasicAck:
			s.stats.Acks++
			return false, nil
		}
	}
	m, err := frames.DecodeMethod(f.Channel, p)
	if err != nil {
		return false, err
	}
	ch := f.Channel
	switch m := m.(type) {
	case *frames.ConnectionStartOK:
		return false, s.send(0, &frames.ConnectionTune{ChannelMax: 2047, FrameMax: brokerFrameMax, Heartbeat: 0})
	case *frames.ConnectionTuneOK:
		return false, nil
	case *frames.ConnectionOpen:
		return false, s.send(0, &frames.ConnectionOpenOK{})
	case *frames.ConnectionClose:
		s.streams.Wait()
		if e := s.streamErr.Load(); e != nil {
			s.stats.Err = e.(error).Error()
		}
		return true, s.send(0, &frames.ConnectionCloseOK{})
	case *frames.ChannelOpen:
		return false, s.send(ch, &frames.ChannelOpenOK{})
	case *frames.ChannelClose:
		return false, s.send(ch, &frames.ChannelCloseOK{})
	case *frames.ChannelCloseOK:
		return false, nil
	case *frames.ConfirmSelect:
		s.confirming = true
		if m.NoWait {
			return false, nil
		}
		return false, s.send(ch, &frames.ConfirmSelectOK{})
	case *frames.BasicQos:
		return false, s.send(ch, &frames.BasicQosOK{})
	case *frames.QueueDeclare:
		name := m.Queue
		if name == "" {
			name = "amq.gen-scripted"
		}
		if m.NoWait {
			return false, nil
		}
		return false, s.send(ch, &frames.QueueDeclareOK{Queue: name})
	case *frames.QueueDelete:
		if m.NoWait {
			return false, nil
		}
		return false, s.send(ch, &frames.QueueDeleteOK{})
	case *frames.BasicCancel:
		if m.NoWait {
			return false, nil
		}
		return false, s.send(ch, &frames.BasicCancelOK{ConsumerTag: m.ConsumerTag})
	case *frames.BasicConsume:
		tag := m.ConsumerTag
		if tag == "" {
			tag = "amq.ctag-scripted"
		}
		if !m.NoWait {
			if err := s.send(ch, &frames.BasicConsumeOK{ConsumerTag: tag}); err != nil {
				return false, err
			}
		}
		size, count, ok := parseStreamQueue(m.Queue)
		if !ok {
			return false, nil // a consumer that gets nothing
		}
		stream, err := newDeliveryStream(ch, tag, size)
		if err != nil {
			return false, err
		}
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			if err := s.stream(stream, count); err != nil {
				s.streamErr.Store(err)
			}
		}()
		return false, nil
	case *frames.BasicNack, *frames.BasicReject:
		s.stats.Acks++
		return false, nil
	}
	return false, fmt.Errorf("scripted broker: unexpected %s on channel %d", m.Key(), ch)
}

// parseStreamQueue reads "bench.<size>.<count>".
func parseStreamQueue(q string) (size, count int, ok bool) {
	parts := strings.Split(q, ".")
	if len(parts) != 3 || parts[0] != "bench" {
		return 0, 0, false
	}
	size, err1 := strconv.Atoi(parts[1])
	count, err2 := strconv.Atoi(parts[2])
	return size, count, err1 == nil && err2 == nil && size >= 0 && count > 0
}

// deliveryStream is a buffer of identical pre-encoded deliveries whose
// delivery tags are patched before each write.
type deliveryStream struct {
	buf     []byte
	msgSize int
	perBuf  int
	tagAt   int // offset of the delivery tag inside one message
}

// Properties of every scripted delivery: content-type and delivery-mode.
var scriptedProps = proto.Properties{ContentType: "application/octet-stream", DeliveryMode: proto.Transient}

func newDeliveryStream(ch uint16, tag string, size int) (*deliveryStream, error) {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	one, err := frames.AppendMessage(nil, ch, &frames.BasicDeliver{ConsumerTag: tag, DeliveryTag: 1, Exchange: "bench", RoutingKey: "bench.key"},
		&scriptedProps, body, brokerFrameMax)
	if err != nil {
		return nil, err
	}
	st := &deliveryStream{msgSize: len(one), perBuf: max(1, streamChunkSize/len(one))}
	// frame header (7), class and method ids (4), consumer tag (1+len)
	st.tagAt = frames.FrameHeaderSize + 4 + 1 + len(tag)
	if binary.BigEndian.Uint64(one[st.tagAt:]) != 1 {
		return nil, errors.New("scripted broker: delivery tag not where expected")
	}
	st.buf = make([]byte, 0, st.perBuf*len(one))
	for range st.perBuf {
		st.buf = append(st.buf, one...)
	}
	return st, nil
}

func (s *brokerConn) stream(st *deliveryStream, count int) error {
	tag := uint64(0)
	for sent := 0; sent < count; {
		k := min(st.perBuf, count-sent)
		for i := range k {
			tag++
			binary.BigEndian.PutUint64(st.buf[i*st.msgSize+st.tagAt:], tag)
		}
		s.wmu.Lock()
		_, err := s.nc.Write(st.buf[:k*st.msgSize])
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		sent += k
		atomic.AddUint64(&s.stats.Delivered, uint64(k))
	}
	return nil
}

// scriptedBroker is the parent's handle on the child process.
type scriptedBroker struct {
	cmd   *childProcess
	Addr  string
	mu    sync.Mutex
	stats []connStats
	lines chan struct{}
}

type childProcess struct {
	pid   int
	stdin io.Closer
	wait  func() error
	kill  func() error
}

// startScriptedBroker re-executes this binary as the scripted broker.
func startScriptedBroker(start func() (*childProcess, io.Reader, error)) (*scriptedBroker, error) {
	cp, stdout, err := start()
	if err != nil {
		return nil, err
	}
	b := &scriptedBroker{cmd: cp, lines: make(chan struct{}, 1024)}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		cp.kill()
		cp.wait()
		return nil, fmt.Errorf("scripted broker did not start: %v", sc.Err())
	}
	line := sc.Text()
	addr, ok := strings.CutPrefix(line, "LISTEN ")
	if !ok {
		cp.kill()
		cp.wait()
		return nil, fmt.Errorf("scripted broker said %q", line)
	}
	b.Addr = addr
	go func() {
		for sc.Scan() {
			if js, ok := strings.CutPrefix(sc.Text(), "STATS "); ok {
				var st connStats
				if json.Unmarshal([]byte(js), &st) == nil {
					b.mu.Lock()
					b.stats = append(b.stats, st)
					b.mu.Unlock()
					select {
					case b.lines <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return b, nil
}

// takeStats returns the connection reports received since the last call.
func (b *scriptedBroker) takeStats() []connStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	b.stats = nil
	return s
}

// Stop ends the child: stdin EOF, then a kill if it lingers.
func (b *scriptedBroker) Stop() {
	b.cmd.stdin.Close()
	done := make(chan struct{})
	go func() { b.cmd.wait(); close(done) }()
	select {
	case <-done:
	case <-timeAfter(5):
		b.cmd.kill()
		<-done
	}
}
