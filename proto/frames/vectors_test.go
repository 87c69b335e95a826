package frames

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// unhex decodes a hex string written for people: spaces, newlines and
// "|" separators are ignored.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	require.NoError(t, err, "bad test vector %q", s)
	return b
}

// checkVector verifies a hand-written stream of frames is self-consistent
// (each size field matches its payload, each frame ends with 0xCE), so
// that a slip in a vector is reported as such rather than as a codec bug.
func checkVector(t testing.TB, b []byte) {
	t.Helper()
	for off := 0; off < len(b); {
		require.GreaterOrEqual(t, len(b)-off, 8, "vector: truncated frame at %d", off)
		size := int(binary.BigEndian.Uint32(b[off+3:]))
		require.GreaterOrEqual(t, len(b)-off, size+8, "vector: frame at %d declares %d bytes", off, size)
		require.Equal(t, byte(0xCE), b[off+7+size], "vector: frame at %d: size field %d does not match", off, size)
		off += size + 8
	}
}

// The vectors below were written by hand from the AMQP 0-9-1 specification
// (section 4.2: frame = type octet, channel short, size long, payload,
// 0xCE; a method payload = class short, method short, arguments; bit
// arguments packed LSB-first into octets; shortstr = one length octet;
// longstr and table = four length octets), never produced by the encoder.
func TestMethodVectors(t *testing.T) {
	tests := []struct {
		name string
		ch   uint16
		m    Method
		hex  string
	}{
		{
			name: "channel.open",
			ch:   1,
			m:    &ChannelOpen{},
			// type 1, ch 1, size 5 | class 20, method 10 | reserved-1 shortstr ""
			hex: "01 0001 00000005 | 0014 000a | 00 | ce",
		},
		{
			name: "channel.open reserved kept",
			ch:   0x1234,
			m:    &ChannelOpen{Reserved1: "x"},
			hex:  "01 1234 00000006 | 0014 000a | 01 78 | ce",
		},
		{
			name: "connection.tune",
			ch:   0,
			m:    &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
			// class 10, method 30 | channel-max 0x07ff | frame-max 0x00020000 | heartbeat 60
			hex: "01 0000 0000000c | 000a 001e | 07ff | 00020000 | 003c | ce",
		},
		{
			name: "connection.tune-ok",
			ch:   0,
			m:    &ConnectionTuneOK{ChannelMax: 0xffff, FrameMax: 4096, Heartbeat: 0},
			hex:  "01 0000 0000000c | 000a 001f | ffff | 00001000 | 0000 | ce",
		},
		{
			name: "queue.declare durable auto-delete no-wait with arguments",
			ch:   1,
			m: &QueueDeclare{
				Queue:      "q1",
				Durable:    true,
				AutoDelete: true,
				NoWait:     true,
				Arguments: proto.Table{
					{Name: "x-max-length", Value: proto.Int32(10)},
					{Name: "x-queue-type", Value: proto.String("quorum")},
				},
			},
			// size 4+2+3+1+4+42 = 56
			// class 50, method 10 | ticket 0 | "q1" |
			// bits: passive 0, durable 1<<1, exclusive 0, auto-delete 1<<3, no-wait 1<<4 = 0x1a |
			// table of 42 bytes: "x-max-length" 'I' 10, "x-queue-type" 'S' "quorum"
			hex: `01 0001 00000038 | 0032 000a | 0000 | 02 7131 | 1a | 0000002a
			      0c 782d6d61782d6c656e677468 49 0000000a
			      0c 782d71756575652d74797065 53 00000006 71756f72756d | ce`,
		},
		{
			name: "queue.declare passive exclusive no arguments",
			ch:   7,
			m:    &QueueDeclare{Reserved1: 1, Queue: "", Passive: true, Exclusive: true},
			// ticket 1 | "" | passive 1<<0 | exclusive 1<<2 = 0x05 | empty table
			hex: "01 0007 0000000c | 0032 000a | 0001 | 00 | 05 | 00000000 | ce",
		},
		{
			name: "basic.publish mandatory",
			ch:   1,
			m:    &BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true},
			// class 60, method 40 | ticket 0 | "ex" | "rk" | mandatory 1<<0
			hex: "01 0001 0000000d | 003c 0028 | 0000 | 02 6578 | 02 726b | 01 | ce",
		},
		{
			name: "basic.publish ticket mandatory immediate",
			ch:   3,
			m:    &BasicPublish{Reserved1: 0x0102, Exchange: "", RoutingKey: "q", Mandatory: true, Immediate: true},
			hex:  "01 0003 0000000a | 003c 0028 | 0102 | 00 | 01 71 | 03 | ce",
		},
		{
			name: "basic.publish immediate only",
			ch:   3,
			m:    &BasicPublish{RoutingKey: "q", Immediate: true},
			hex:  "01 0003 0000000a | 003c 0028 | 0000 | 00 | 01 71 | 02 | ce",
		},
		{
			name: "basic.deliver redelivered",
			ch:   2,
			m: &BasicDeliver{
				ConsumerTag: "ctag",
				DeliveryTag: 0x0102030405060708,
				Redelivered: true,
				Exchange:    "",
				RoutingKey:  "rk",
			},
			// class 60, method 60 | "ctag" | delivery-tag | redelivered 1 | "" | "rk"
			hex: "01 0002 00000016 | 003c 003c | 04 63746167 | 0102030405060708 | 01 | 00 | 02 726b | ce",
		},
		{
			name: "basic.ack multiple",
			ch:   1,
			m:    &BasicAck{DeliveryTag: 42, Multiple: true},
			// class 60, method 80 | delivery-tag 42 | multiple 1<<0
			hex: "01 0001 0000000d | 003c 0050 | 000000000000002a | 01 | ce",
		},
		{
			name: "basic.ack single",
			ch:   1,
			m:    &BasicAck{DeliveryTag: 1},
			hex:  "01 0001 0000000d | 003c 0050 | 0000000000000001 | 00 | ce",
		},
		{
			name: "basic.nack multiple requeue",
			ch:   1,
			m:    &BasicNack{DeliveryTag: 7, Multiple: true, Requeue: true},
			// class 60, method 120 | delivery-tag 7 | multiple 1<<0 | requeue 1<<1
			hex: "01 0001 0000000d | 003c 0078 | 0000000000000007 | 03 | ce",
		},
		{
			name: "basic.nack requeue only",
			ch:   1,
			m:    &BasicNack{DeliveryTag: 0xffffffffffffffff, Requeue: true},
			hex:  "01 0001 0000000d | 003c 0078 | ffffffffffffffff | 02 | ce",
		},
		{
			name: "connection.close",
			ch:   0,
			m:    &ConnectionClose{ReplyCode: 320, ReplyText: "bye", ClassID: 60, MethodID: 40},
			// class 10, method 50 | 320 | "bye" | 60 | 40
			hex: "01 0000 0000000e | 000a 0032 | 0140 | 03 627965 | 003c | 0028 | ce",
		},
		{
			name: "exchange.declare durable internal",
			ch:   1,
			m:    &ExchangeDeclare{Exchange: "x", Type: "topic", Durable: true, Internal: true},
			// passive 0, durable 1<<1, auto-delete 0, internal 1<<3, no-wait 0 = 0x0a
			hex: "01 0001 00000013 | 0028 000a | 0000 | 01 78 | 05 746f706963 | 0a | 00000000 | ce",
		},
		{
			name: "confirm.select no-wait",
			ch:   1,
			m:    &ConfirmSelect{NoWait: true},
			hex:  "01 0001 00000005 | 0055 000a | 01 | ce",
		},
		{
			name: "channel.open-ok longstr reserved",
			ch:   1,
			m:    &ChannelOpenOK{},
			// class 20, method 11 | reserved-1 longstr ""
			hex: "01 0001 00000008 | 0014 000b | 00000000 | ce",
		},
	}
	var p Parser
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			checkVector(t, want)

			got, err := AppendMethod(nil, tc.ch, tc.m)
			require.NoError(t, err)
			require.Equal(t, want, got, "AppendMethod")

			// Appending keeps what is already in dst.
			prefix := []byte{0xAA, 0xBB}
			got, err = AppendMethod(prefix, tc.ch, tc.m)
			require.NoError(t, err)
			require.Equal(t, append([]byte{0xAA, 0xBB}, want...), got)

			args, err := AppendMethodArgs(nil, tc.m)
			require.NoError(t, err)
			require.Equal(t, want[FrameHeaderSize:len(want)-1], args, "AppendMethodArgs")

			f, n, err := ReadFrame(want, 0)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Equal(t, FrameMethod, f.Type)
			require.Equal(t, tc.ch, f.Channel)
			require.Equal(t, want[FrameHeaderSize:len(want)-1], f.Payload)

			m, err := p.ParseMethod(f.Channel, f.Payload)
			require.NoError(t, err)
			require.Equal(t, tc.m, m, "Parser.ParseMethod")
			require.Equal(t, tc.m.Key(), m.Key())

			m, err = DecodeMethod(f.Channel, f.Payload)
			require.NoError(t, err)
			require.Equal(t, tc.m, m, "DecodeMethod")
		})
	}
}

func TestHeartbeatVector(t *testing.T) {
	want := unhex(t, "08 0000 00000000 ce")
	require.Equal(t, want, AppendHeartbeat(nil))
	require.Equal(t, append([]byte{1}, want...), AppendHeartbeat([]byte{1}))

	f, n, err := ReadFrame(want, 0)
	require.NoError(t, err)
	require.Equal(t, 8, n)
	require.Equal(t, FrameHeartbeat, f.Type)
	require.Equal(t, uint16(0), f.Channel)
	require.Empty(t, f.Payload)
}

func TestContentHeaderVectors(t *testing.T) {
	tests := []struct {
		name     string
		ch       uint16
		bodySize uint64
		props    *proto.Properties
		hex      string
		want     proto.Properties
	}{
		{
			name:     "content-type and delivery-mode",
			ch:       1,
			bodySize: 10000,
			props:    &proto.Properties{ContentType: "application/json", DeliveryMode: proto.Persistent},
			// type 2, ch 1, size 32 | class 60 | weight 0 | body-size 10000 |
			// flags content-type 1<<15 | delivery-mode 1<<12 = 0x9000 |
			// "application/json" | 2
			hex: `02 0001 00000020 | 003c | 0000 | 0000000000002710 | 9000
			      10 6170706c69636174696f6e2f6a736f6e | 02 | ce`,
			want: proto.Properties{ContentType: "application/json", DeliveryMode: 2, Flags: 0x9000},
		},
		{
			name:     "no properties",
			ch:       9,
			bodySize: 0,
			props:    nil,
			hex:      "02 0009 0000000e | 003c | 0000 | 0000000000000000 | 0000 | ce",
			want:     proto.Properties{},
		},
		{
			name:     "headers, priority forced to zero, timestamp",
			ch:       1,
			bodySize: 1,
			props: &proto.Properties{
				Headers:   proto.Table{{Name: "a", Value: proto.Bool(true)}},
				Timestamp: time.Unix(1714979289, 0),
				Flags:     proto.FlagPriority,
			},
			// flags headers 1<<13 | priority 1<<11 | timestamp 1<<6 = 0x2840 |
			// table of 4 bytes: "a" 't' 1 | priority 0 | timestamp 0x663881d9
			hex: `02 0001 0000001f | 003c | 0000 | 0000000000000001 | 2840
			      00000004 01 61 74 01 | 00 | 00000000663881d9 | ce`,
			want: proto.Properties{
				Headers:   proto.Table{{Name: "a", Value: proto.Bool(true)}},
				Timestamp: time.Unix(1714979289, 0).UTC(),
				Flags:     0x2840,
			},
		},
		{
			name:     "user-id and app-id",
			ch:       2,
			bodySize: 5,
			props:    &proto.Properties{UserID: "guest", AppID: "app"},
			// flags user-id 1<<4 | app-id 1<<3 = 0x0018
			hex:  "02 0002 00000018 | 003c | 0000 | 0000000000000005 | 0018 | 05 6775657374 | 03 617070 | ce",
			want: proto.Properties{UserID: "guest", AppID: "app", Flags: 0x0018},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			checkVector(t, want)
			got, err := AppendContentHeader(nil, tc.ch, tc.bodySize, tc.props)
			require.NoError(t, err)
			require.Equal(t, want, got)

			f, n, err := ReadFrame(want, 0)
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			require.Equal(t, FrameHeader, f.Type)
			require.Equal(t, tc.ch, f.Channel)

			var h ContentHeader
			require.NoError(t, h.Parse(f.Channel, f.Payload))
			require.Equal(t, ClassBasic, h.ClassID)
			require.Equal(t, uint16(0), h.Weight)
			require.Equal(t, tc.bodySize, h.BodySize)
			require.Equal(t, tc.want.Flags, h.Properties.Flags)
			p, err := h.Properties.Properties()
			require.NoError(t, err)
			require.Equal(t, tc.want, p)

			// A decoded header re-encodes to the same bytes.
			again, err := AppendContentHeader(nil, tc.ch, h.BodySize, &p)
			require.NoError(t, err)
			require.Equal(t, want, again)
		})
	}
}

func TestBodyVectors(t *testing.T) {
	tests := []struct {
		name     string
		ch       uint16
		body     string
		frameMax uint32
		hex      string
	}{
		{"one frame, no limit", 1, "hello", 0, "03 0001 00000005 68656c6c6f ce"},
		{"one frame, exact fit", 1, "hello", 13, "03 0001 00000005 68656c6c6f ce"},
		{
			"split by frame_max 11 (3 payload bytes a frame)", 0x0102, "hello", 11,
			"03 0102 00000003 68656c ce | 03 0102 00000002 6c6f ce",
		},
		{"empty body, no frames", 1, "", 4096, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			checkVector(t, want)
			got := AppendBody(nil, tc.ch, []byte(tc.body), tc.frameMax)
			require.Equal(t, len(want), len(got))
			if len(want) > 0 {
				require.Equal(t, want, got)
			}
			var body []byte
			for rest := want; len(rest) > 0; {
				f, n, err := ReadFrame(rest, tc.frameMax)
				require.NoError(t, err)
				require.NotZero(t, n)
				require.Equal(t, FrameBody, f.Type)
				require.Equal(t, tc.ch, f.Channel)
				body = append(body, f.Payload...)
				rest = rest[n:]
			}
			require.Equal(t, tc.body, string(body))
		})
	}
}

// A whole message as AppendMessage writes it: basic.publish, header, body.
func TestMessageVector(t *testing.T) {
	want := unhex(t, `01 0001 0000000d | 003c 0028 | 0000 | 02 6578 | 02 726b | 00 | ce
		02 0001 00000020 | 003c | 0000 | 0000000000000003 | 9000
		10 6170706c69636174696f6e2f6a736f6e | 01 | ce
		03 0001 00000002 7b7d ce
		03 0001 00000001 0a ce`)
	checkVector(t, want)
	got, err := AppendMessage(nil, 1,
		&BasicPublish{Exchange: "ex", RoutingKey: "rk"},
		&proto.Properties{ContentType: "application/json", DeliveryMode: proto.Transient},
		[]byte("{}\n"), 10)
	require.NoError(t, err)
	require.Equal(t, want, got)
}
