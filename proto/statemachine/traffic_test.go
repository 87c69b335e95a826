package statemachine

// Replays of real RabbitMQ 3.10.8 traffic (testdata/rabbitmq-3.10.8 at the
// repository's root): the
// SERVER side of each recording is fed into the machine while the test
// issues the commands the recorded client issued, decoded from the CLIENT
// side. The machine's own output must match what the recorded client
// wrote, and its events what the recording implies.

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
)

// recordingsDir returns the directory of the recordings, part of the
// repository.
func recordingsDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "rabbitmq-3.10.8")
	_, err := os.Stat(filepath.Join(dir, "README.md"))
	require.NoError(t, err, "the RabbitMQ 3.10.8 recordings belong in the repository")
	return dir
}

// recFrame is one frame of a recorded stream.
type recFrame struct {
	off     int
	typ     frames.FrameType
	ch      uint16
	payload []byte
	raw     []byte
	method  frames.Method // method frames only
}

// readRecording splits a recorded stream into frames; a client stream
// starts with the protocol header, which is checked and dropped.
func readRecording(t testing.TB, path string, client bool) []recFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	off := 0
	if client {
		require.Equal(t, frames.ProtocolHeader, string(b[:8]))
		off = 8
	}
	var fs []recFrame
	for off < len(b) {
		f, n, err := frames.ReadFrame(b[off:], 0)
		require.NoError(t, err, "%s at %d", path, off)
		require.NotZero(t, n, "%s: truncated frame at %d", path, off)
		rf := recFrame{off: off, typ: f.Type, ch: f.Channel, payload: f.Payload, raw: b[off : off+n]}
		if f.Type == frames.FrameMethod {
			rf.method, err = frames.DecodeMethod(f.Channel, f.Payload)
			require.NoError(t, err, "%s at %d", path, off)
		}
		fs = append(fs, rf)
		off += n
	}
	return fs
}

// recCmd is one command of the recorded client: a method, with its
// content for basic.publish.
type recCmd struct {
	off   int
	ch    uint16
	m     frames.Method
	props proto.Properties
	body  []byte
	// auto: the machine sends this itself (the handshake, and the
	// answers to the server's close, flow and cancel).
	auto bool
}

func isAutoSent(ch uint16, k frames.MethodKey) bool {
	switch k {
	case frames.MethodConnectionStartOK, frames.MethodConnectionSecureOK, frames.MethodConnectionTuneOK, frames.MethodConnectionOpen:
		return ch == 0
	case frames.MethodConnectionCloseOK, frames.MethodChannelCloseOK, frames.MethodChannelFlowOK, frames.MethodBasicCancelOK:
		return true
	}
	return false
}

func clientCommands(t testing.TB, fs []recFrame) []recCmd {
	t.Helper()
	var cmds []recCmd
	for _, f := range fs {
		switch f.typ {
		case frames.FrameMethod:
			cmds = append(cmds, recCmd{off: f.off, ch: f.ch, m: f.method, auto: isAutoSent(f.ch, f.method.Key())})
		case frames.FrameHeader:
			last := &cmds[len(cmds)-1]
			require.Equal(t, frames.MethodBasicPublish, last.m.Key(), "content header at %d", f.off)
			p, err := proto.ParseProperties(f.payload[12:])
			require.NoError(t, err)
			last.props = p
		case frames.FrameBody:
			last := &cmds[len(cmds)-1]
			last.body = append(last.body, f.payload...)
		}
	}
	return cmds
}

// expectedReply is a server reply matched to the client request it answers.
type expectedReply struct {
	ch      uint16
	request frames.MethodKey
	reply   frames.MethodKey
}

// schedule decides, for every server frame, the last client command that
// must have been issued before the frame is fed: the request a reply
// answers, every command before the client's answer to a server-sent
// close, flow or cancel, the publish an ack or nack confirms. It also
// returns the replies in order, for the events to check.
func schedule(t testing.TB, cmds []recCmd, server []recFrame) (need []int, replies []expectedReply) {
	t.Helper()
	pending := map[uint16][]int{}   // client requests awaiting replies, per channel
	publishes := map[uint16][]int{} // confirm-mode publishes, per channel: tag i+1 is publishes[i]
	confirming := map[uint16]bool{}
	for i, c := range cmds {
		k := c.m.Key()
		switch {
		case c.auto:
		case k == frames.MethodChannelOpen:
			confirming[c.ch] = false
			publishes[c.ch] = nil
		case k == frames.MethodConfirmSelect:
			confirming[c.ch] = true
		case k == frames.MethodBasicPublish && confirming[c.ch]:
			publishes[c.ch] = append(publishes[c.ch], i)
		}
		if !c.auto && c.m.ExpectsReply() {
			pending[c.ch] = append(pending[c.ch], i)
		}
	}
	claimed := map[int]bool{}
	// autoAnswer finds the client's recorded answer to a server method.
	autoAnswer := func(ch uint16, k frames.MethodKey) int {
		for i, c := range cmds {
			if c.auto && !claimed[i] && c.ch == ch && c.m.Key() == k {
				claimed[i] = true
				return i
			}
		}
		return -1
	}
	need = make([]int, len(server))
	for j, f := range server {
		need[j] = -1
		if f.method == nil {
			continue
		}
		k := f.method.Key()
		q := pending[f.ch]
		switch m := f.method.(type) {
		case *frames.ChannelClose, *frames.ConnectionClose:
			okKey := frames.MethodChannelCloseOK
			if f.ch == 0 {
				okKey = frames.MethodConnectionCloseOK
			}
			if i := autoAnswer(f.ch, okKey); i >= 0 {
				need[j] = i - 1
				for len(q) > 0 && q[0] < i { // the close fails them
					q = q[1:]
				}
				pending[f.ch] = q
			}
			continue
		case *frames.ChannelFlow:
			need[j] = autoAnswer(f.ch, frames.MethodChannelFlowOK) - 1
			continue
		case *frames.BasicCancel:
			if !m.NoWait {
				need[j] = autoAnswer(f.ch, frames.MethodBasicCancelOK) - 1
			}
			continue
		case *frames.BasicAck, *frames.BasicNack:
			tag := uint64(0)
			if a, ok := m.(*frames.BasicAck); ok {
				tag = a.DeliveryTag
			} else {
				tag = m.(*frames.BasicNack).DeliveryTag
			}
			p := publishes[f.ch]
			require.NotZero(t, tag)
			require.LessOrEqual(t, tag, uint64(len(p)), "server confirm %d at %d: not that many publishes", tag, f.off)
			need[j] = p[tag-1]
			continue
		}
		if len(q) > 0 && frames.AcceptsReply(cmds[q[0]].m.Key(), k) {
			need[j] = q[0]
			replies = append(replies, expectedReply{ch: f.ch, request: cmds[q[0]].m.Key(), reply: k})
			pending[f.ch] = q[1:]
		}
	}
	return need, replies
}

// replay feeds the server stream into tc, issuing the client's commands as
// the schedule says, and returns the client's recorded frames.
func replay(t testing.TB, tc *testConn, dir, name string) (client []recFrame, replies []expectedReply) {
	t.Helper()
	client = readRecording(t, filepath.Join(dir, name+".client.bin"), true)
	server := readRecording(t, filepath.Join(dir, name+".server.bin"), false)
	cmds := clientCommands(t, client)
	need, replies := schedule(t, cmds, server)

	next := 0
	issue := func(upto int) {
		for ; next <= upto && next < len(cmds); next++ {
			c := cmds[next]
			if c.auto {
				continue
			}
			var (
				err error
				tok Token
			)
			switch m := c.m.(type) {
			case *frames.ChannelOpen:
				var id uint16
				id, err = tc.conn.OpenChannel()
				require.Equal(t, c.ch, id, "OpenChannel for the channel.open at %d", c.off)
			case *frames.ChannelClose:
				err = tc.conn.CloseChannel(c.ch, proto.Reply{Code: proto.ReplyCode(m.ReplyCode), Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID})
			case *frames.ConnectionClose:
				err = tc.conn.Close(proto.Reply{Code: proto.ReplyCode(m.ReplyCode), Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID})
			case *frames.ConnectionUpdateSecret:
				tok, err = tc.conn.UpdateSecret(m.NewSecret, m.Reason)
			case *frames.BasicPublish:
				_, err = tc.conn.Publish(c.ch, m, &c.props, c.body, nil)
			default:
				tok, err = tc.conn.Call(c.ch, m)
			}
			require.NoError(t, err, "client %s at %d", c.m.Key(), c.off)
			if tok != 0 {
				tc.track(c.ch, tok)
			}
			tc.pump()
		}
	}
	var batch []byte // server frames fed together, so splits span frames
	for j, f := range server {
		if need[j] >= next {
			tc.writeRaw(batch)
			batch = nil
			issue(need[j])
		}
		batch = append(batch, f.raw...)
	}
	tc.writeRaw(batch)
	issue(len(cmds) - 1)
	tc.pump()
	return client, replies
}

// requireSameClientStream compares what the machine wrote (tc.out, from
// after the protocol header) with the recorded client stream. Heartbeats
// are skipped; start-ok and tune-ok are compared on what the machine
// controls; close codes 0 (py-amqp) are sent as 200.
func requireSameClientStream(t testing.TB, tc *testConn, recorded []recFrame, sameTune bool) {
	t.Helper()
	var ours []recFrame
	for b := tc.out; len(b) > 0; {
		f, n, err := frames.ReadFrame(b, 0)
		require.NoError(t, err)
		require.NotZero(t, n)
		rf := recFrame{typ: f.Type, ch: f.Channel, payload: f.Payload}
		if f.Type == frames.FrameMethod {
			rf.method, err = frames.DecodeMethod(f.Channel, f.Payload)
			require.NoError(t, err)
		}
		if f.Type != frames.FrameHeartbeat {
			ours = append(ours, rf)
		}
		b = b[n:]
	}
	var theirs []recFrame
	for _, f := range recorded {
		if f.typ != frames.FrameHeartbeat {
			theirs = append(theirs, f)
		}
	}
	require.Equal(t, len(theirs), len(ours), "frames written: ours %s", describeFrames(tc.out))
	for i := range theirs {
		want, got := theirs[i], ours[i]
		require.Equal(t, want.typ, got.typ, "frame %d (recorded at %d)", i, want.off)
		require.Equal(t, want.ch, got.ch, "frame %d (recorded at %d)", i, want.off)
		if want.typ != frames.FrameMethod {
			require.Equal(t, want.payload, got.payload, "%s frame %d (recorded at %d)", want.typ, i, want.off)
			continue
		}
		switch w := want.method.(type) {
		case *frames.ConnectionStartOK:
			g := got.method.(*frames.ConnectionStartOK)
			require.Equal(t, w.Mechanism, g.Mechanism)
			require.Equal(t, w.Response, g.Response)
			require.Equal(t, w.Locale, g.Locale)
			continue
		case *frames.ConnectionTuneOK:
			g := got.method.(*frames.ConnectionTuneOK)
			if !sameTune {
				g.Heartbeat = w.Heartbeat
			}
			require.Equal(t, w, g)
			continue
		case *frames.ConnectionOpen:
			require.Equal(t, w.VirtualHost, got.method.(*frames.ConnectionOpen).VirtualHost)
			continue
		case *frames.ConnectionClose:
			if w.ReplyCode == 0 {
				w.ReplyCode = 200
			}
		case *frames.ChannelClose:
			if w.ReplyCode == 0 {
				w.ReplyCode = 200
			}
		}
		require.Equal(t, want.method, got.method, "frame %d (recorded at %d)", i, want.off)
	}
}

// requireReplies checks the EventReply sequence against the schedule's.
func requireReplies(t testing.TB, log []Event, want []expectedReply) {
	t.Helper()
	var got []expectedReply
	for _, e := range log {
		if e.Kind == EventReply && e.Method != nil { // not the requests failed by a channel's end
			got = append(got, expectedReply{ch: e.Channel, request: e.Request, reply: e.Method.Key()})
		}
	}
	var w []expectedReply
	for _, r := range want {
		switch r.reply {
		case frames.MethodChannelOpenOK, frames.MethodChannelCloseOK, frames.MethodConnectionCloseOK:
			continue // reported as channel-open, channel-closed, closed
		}
		w = append(w, r)
	}
	require.Equal(t, w, got)
}

func countEvents(log []Event) map[EventKind]int {
	n := map[EventKind]int{}
	for _, e := range log {
		n[e.Kind]++
	}
	return n
}

// replayAllModes replays a recording with every feed mode, checks that the
// events are the same, and returns them.
func replayAllModes(t *testing.T, cfg Config, name string, sameTune bool) ([]Event, []expectedReply) {
	dir := recordingsDir(t)
	var logs [][]Event
	var replies []expectedReply
	for _, m := range feedModes {
		t.Run(m.String(), func(t *testing.T) {
			tc := newTestConn(t, cfg, withFeedMode(m))
			client, rs := replay(t, tc, dir, name)
			requireSameClientStream(t, tc, client, sameTune)
			requireReplies(t, tc.log, rs)
			logs = append(logs, tc.log)
			replies = rs
		})
	}
	require.Len(t, logs, len(feedModes))
	for i := 1; i < len(logs); i++ {
		require.Equal(t, logs[0], logs[i], "events fed %s differ from events fed whole", feedModes[i])
	}
	return logs[0], replies
}

func amqplainConfig(password string) Config {
	return Config{Auth: []Authenticator{AMQPlainAuth{Username: "guest", Password: password}}, Heartbeat: -1}
}

func TestTrafficAMQPlain(t *testing.T) {
	log, _ := replayAllModes(t, amqplainConfig("guest"), "amqplain", false)
	kinds := []EventKind{EventConnected, EventChannelOpen, EventReply, EventChannelClosed, EventClosed}
	require.Len(t, log, len(kinds))
	for i, k := range kinds {
		require.Equal(t, k, log[i].Kind, "event %d", i)
	}
	require.Equal(t, &frames.QueueDeclareOK{Queue: "cap.amqplain"}, log[2].Method)
	require.Equal(t, frames.MethodQueueDeclare, log[2].Request)
	require.NoError(t, log[3].Err)
	require.NoError(t, log[4].Err)
}

func TestTrafficWrongPassword(t *testing.T) {
	log, _ := replayAllModes(t, amqplainConfig("not-the-password"), "wrong-password", false)
	require.Len(t, log, 1)
	require.Equal(t, EventClosed, log[0].Kind)
	var ce *proto.ConnectionError
	require.ErrorAs(t, log[0].Err, &ce)
	require.Equal(t, proto.AccessRefused, ce.Code)
	require.Equal(t, proto.ByPeer, ce.Origin)
	require.Contains(t, ce.Text, "ACCESS_REFUSED")
	require.Contains(t, ce.Text, "AMQPLAIN")
	require.ErrorIs(t, log[0].Err, proto.AccessRefused)
}

func TestTrafficUnknownVhost(t *testing.T) {
	cfg := amqplainConfig("guest")
	cfg.VirtualHost = "no-such-vhost"
	log, _ := replayAllModes(t, cfg, "unknown-vhost", false)
	require.Len(t, log, 1)
	require.Equal(t, EventClosed, log[0].Kind)
	var ce *proto.ConnectionError
	require.ErrorAs(t, log[0].Err, &ce)
	require.Equal(t, proto.Reply{Code: proto.NotAllowed, Text: "NOT_ALLOWED - vhost no-such-vhost not found", ClassID: 10, MethodID: 40}, ce.Reply)
	require.Equal(t, proto.ByPeer, ce.Origin)
}

func TestTrafficConfirmsNack(t *testing.T) {
	cfg := Config{Auth: []Authenticator{PlainAuth{Username: "guest", Password: "guest"}}} // pika: PLAIN, heartbeat 60
	log, _ := replayAllModes(t, cfg, "confirms-nack", true)
	n := countEvents(log)
	require.Equal(t, 1, n[EventConnected])
	require.Equal(t, 1, n[EventChannelOpen])
	require.Equal(t, 2, n[EventDelivery])
	require.Equal(t, 1, n[EventChannelClosed])
	require.Equal(t, 1, n[EventClosed])
	require.Zero(t, n[EventReturn])
	var confirms []Event
	for _, e := range log {
		if e.Kind == EventConfirm {
			confirms = append(confirms, e)
		}
	}
	require.Equal(t, []Event{
		{Kind: EventConfirm, Channel: 1, DeliveryTag: 1, Ack: true, Publishes: []Published{{Seq: 1}}},
		{Kind: EventConfirm, Channel: 1, DeliveryTag: 2, Ack: true, Publishes: []Published{{Seq: 2}}},
		{Kind: EventConfirm, Channel: 1, DeliveryTag: 3, Multiple: true, Ack: false, Publishes: []Published{{Seq: 3}}},
		{Kind: EventConfirm, Channel: 1, DeliveryTag: 4, Multiple: true, Ack: false, Publishes: []Published{{Seq: 4}}},
	}, confirms)
	for _, e := range log {
		switch {
		case e.Kind == EventReply && e.Request == frames.MethodBasicGet:
			require.Equal(t, []byte("p0"), e.Message.Body)
			p, err := e.Message.Properties.Properties()
			require.NoError(t, err)
			require.Equal(t, "text/plain", p.ContentType)
		case e.Kind == EventDelivery:
			require.Equal(t, "ctag1.194e49ace47a4dc2972f5b9b3106e07a", e.Message.ConsumerTag)
		case e.Kind == EventChannelClosed:
			require.NoError(t, e.Err)
			require.Zero(t, e.Unconfirmed)
		}
	}
	last := log[len(log)-1]
	require.Equal(t, EventClosed, last.Kind)
	require.NoError(t, last.Err)
}

func TestTrafficSessionFull(t *testing.T) {
	cfg := amqplainConfig("guest")
	cfg.Heartbeat = 4 * time.Second
	log, replies := replayAllModes(t, cfg, "session-full", true)
	n := countEvents(log)
	require.Equal(t, 1, n[EventConnected])
	require.Equal(t, 4, n[EventChannelOpen])
	require.Equal(t, 14, n[EventDelivery])
	require.Equal(t, 1, n[EventReturn])
	require.Equal(t, 7, n[EventConfirm])
	require.Equal(t, 1, n[EventConsumerCancelled])
	require.Equal(t, 1, n[EventBlocked])
	require.Equal(t, 1, n[EventUnblocked])
	require.Zero(t, n[EventFlow], "the flow was the client's: a reply")
	require.Zero(t, n[EventMessageTooLarge])
	require.Equal(t, 4, n[EventChannelClosed]) // 3 (404), 1 (ours), 2 and 3 at connection.close
	require.Equal(t, 1, n[EventClosed])
	require.Equal(t, len(log), 1+4+14+1+7+1+1+1+4+1+n[EventReply])
	require.NotEmpty(t, replies)

	var (
		getEmpty, bigBody, fullGet bool
		blockedAt, unblockedAt     = -1, -1
		closed404                  bool
	)
	for i, e := range log {
		switch e.Kind {
		case EventReturn:
			require.Equal(t, proto.NoRoute, e.Message.ReplyCode)
			require.Equal(t, "NO_ROUTE", e.Message.ReplyText)
			require.Equal(t, "cap.direct", e.Message.Exchange)
			require.Equal(t, "nowhere", e.Message.RoutingKey)
			require.Equal(t, []byte("lost"), e.Message.Body)
			// Bound to the fifth publish, by the ack that follows it.
			require.Equal(t, uint64(5), e.Message.PublishSeq)
			next := log[i+1]
			require.Equal(t, EventConfirm, next.Kind)
			require.Equal(t, uint64(5), next.DeliveryTag)
		case EventConfirm:
			require.True(t, e.Ack)
			require.Equal(t, uint16(1), e.Channel)
		case EventReply:
			switch m := e.Method.(type) {
			case *frames.BasicGetEmpty:
				getEmpty = true
			case *frames.BasicGetOK:
				if m.DeliveryTag == 4 {
					fullGet = true
					require.Equal(t, []byte("héllo wörld"), e.Message.Body)
					p, err := e.Message.Properties.Properties()
					require.NoError(t, err)
					require.Equal(t, "application/json", p.ContentType)
					require.Equal(t, "utf-8", p.ContentEncoding)
					require.Equal(t, proto.Persistent, p.DeliveryMode)
					require.Equal(t, uint8(5), p.Priority)
					require.Equal(t, "corr-1", p.CorrelationID)
					require.Equal(t, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), p.Timestamp)
					require.Equal(t, "capture", p.AppID)
					v, ok := p.Headers.Get("int64")
					require.True(t, ok)
					i64, _ := v.AsInt()
					require.Equal(t, int64(1099511627776), i64)
				}
			}
		case EventDelivery:
			require.Equal(t, "cap-consumer", e.Message.ConsumerTag)
			if len(e.Message.Body) == 300000 {
				bigBody = true
				require.Equal(t, bytes.Repeat([]byte("x"), 300000), e.Message.Body)
				require.Equal(t, uint64(6), e.Message.DeliveryTag)
			}
		case EventConsumerCancelled:
			require.Equal(t, Event{Kind: EventConsumerCancelled, Channel: 1, ConsumerTag: "cancel-me"}, e)
		case EventBlocked:
			blockedAt = i
			require.Equal(t, "low on memory", e.Reason)
		case EventUnblocked:
			unblockedAt = i
		case EventChannelClosed:
			if e.Err != nil {
				closed404 = true
				require.Equal(t, uint16(3), e.Channel)
				var ce *proto.ChannelError
				require.ErrorAs(t, e.Err, &ce)
				require.Equal(t, proto.Reply{Code: proto.NotFound, Text: "NOT_FOUND - no queue 'cap.missing' in vhost '/'", ClassID: 50, MethodID: 10}, ce.Reply)
				require.Equal(t, proto.ByPeer, ce.Origin)
			}
		}
	}
	require.True(t, getEmpty, "get-empty reply")
	require.True(t, fullGet, "get-ok with every property")
	require.True(t, bigBody, "300000-byte body")
	require.True(t, closed404, "channel 3 closed with 404")
	require.Greater(t, unblockedAt, blockedAt)
	require.GreaterOrEqual(t, blockedAt, 0)
	last := log[len(log)-1]
	require.Equal(t, EventClosed, last.Kind)
	require.NoError(t, last.Err)
}
