package warren

// Legal but unusual traffic costs the client memory in proportion to its
// size: each kind below is received at two sizes, and what the client
// allocated (bytes and allocations, from runtime.MemStats, not timing)
// grows at most linearly. Bytes allocated stand for bytes copied: the
// reader copies nothing it does not allocate for (a delivery's body and
// headers), the frames themselves are parsed in place.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
	"github.com/warren-amqp/warren/proto/frames"
	"github.com/warren-amqp/warren/transport/netpipe"
)

// costFrameMax is the frame_max the scripted broker negotiates.
const costFrameMax = 131072

// costDelivery encodes one delivery to consumer "c": method, header, and
// the body split into frames of at most costFrameMax bytes, with beats
// heartbeat frames before the header and before each body frame.
func costDelivery(t *testing.T, tag uint64, exchange, key string, props *proto.Properties, body []byte, beats int) []byte {
	out := hostileMethod(t, 1, &frames.BasicDeliver{ConsumerTag: "c", DeliveryTag: tag, Exchange: exchange, RoutingKey: key})
	beat := hostileFrame(byte(frames.FrameHeartbeat), 0, nil, frames.FrameEndOctet)
	for range beats {
		out = append(out, beat...)
	}
	h, err := frames.AppendContentHeader(nil, 1, uint64(len(body)), props)
	require.NoError(t, err)
	out = append(out, h...)
	for len(body) > 0 {
		n := min(len(body), costFrameMax-8)
		for range beats {
			out = append(out, beat...)
		}
		out = frames.AppendBody(out, 1, body[:n], costFrameMax)
		body = body[n:]
	}
	return out
}

// cost is what receiving some traffic allocated.
type cost struct {
	bytes, allocs uint64
	wire          int // bytes sent
}

// measureCost sends warm (to grow the client's buffers first) and then
// traffic to a consumer, and returns what the client allocated between
// the start of traffic and its last delivery.
func measureCost(t *testing.T, warm []byte, nWarm int, traffic []byte, n int) cost {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := make(chan struct{})
	conn, cons := hostileConsumerWith(t, ctx, Config{ConsumerBuffer: 64}, true, func(b *scriptedBroker, server *netpipe.Conn) {
		if _, err := server.Write(warm); err != nil {
			return
		}
		select {
		case <-start:
		case <-ctx.Done():
			return
		}
		if _, err := server.Write(traffic); err != nil {
			return
		}
		b.serveMethods(nil)
	})
	for range nWarm {
		d := receive(t, ctx, cons)
		_, _ = d.Body, d.Properties.Headers
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	close(start)
	for range n {
		d := receive(t, ctx, cons)
		_, _ = d.Body, d.Properties.Headers
	}
	runtime.ReadMemStats(&after)
	require.NoError(t, conn.Close(ctx))
	return cost{bytes: after.TotalAlloc - before.TotalAlloc, allocs: after.Mallocs - before.Mallocs, wire: len(traffic)}
}

// nestedHeaders is a header table nested as deep as the codec accepts.
func nestedHeaders() proto.Table {
	t := proto.Table{{Name: "leaf", Value: proto.String("v")}}
	for range proto.MaxNestingDepth - 2 {
		t = proto.Table{{Name: "n", Value: proto.TableValue(t)}}
	}
	return t
}

func TestCostLinearInTrafficSize(t *testing.T) {
	long := strings.Repeat("k", 255)
	longProps := &proto.Properties{ContentType: long, ContentEncoding: long, MessageID: long, CorrelationID: long,
		ReplyTo: long, Type: long, UserID: long, AppID: long, Expiration: "60000"}
	cases := []struct {
		name string
		size int // the unit count measured, then doubled
		// unit returns the bytes of one message at the size, and how
		// many deliveries they make.
		traffic func(t *testing.T, size int) ([]byte, int)
		// bound is the allocation allowed per wire byte, beyond a
		// constant per delivery.
		bound float64
	}{
		{"empty bodies", 2000, func(t *testing.T, size int) ([]byte, int) {
			var out []byte
			for i := range size {
				out = append(out, costDelivery(t, uint64(i+1), "", "q", &proto.Properties{}, nil, 0)...)
			}
			return out, size
		}, 0},
		// Bodies over 1 MiB: assembled by doubling and handed over
		// without a copy (at most 2 bytes allocated per body byte).
		{"bodies split exactly at frame_max", 16, func(t *testing.T, size int) ([]byte, int) {
			body := make([]byte, size*(costFrameMax-8)) // size full frames
			var out []byte
			for i := range 5 {
				out = append(out, costDelivery(t, uint64(i+1), "", "q", &proto.Properties{}, body, 0)...)
			}
			return out, 5
		}, 2},
		// Bodies under 1 MiB: assembled in the channel's kept buffer and
		// copied once.
		{"bodies split exactly at frame_max, under 1 MiB", 2, func(t *testing.T, size int) ([]byte, int) {
			body := make([]byte, size*(costFrameMax-8))
			var out []byte
			for i := range 20 {
				out = append(out, costDelivery(t, uint64(i+1), "", "q", &proto.Properties{}, body, 0)...)
			}
			return out, 20
		}, 1.1},
		{"heartbeats between content frames", 100, func(t *testing.T, size int) ([]byte, int) {
			body := make([]byte, 4*(costFrameMax-8))
			var out []byte
			for i := range 10 {
				out = append(out, costDelivery(t, uint64(i+1), "", "q", &proto.Properties{}, body, size)...)
			}
			return out, 10
		}, 1.1},
		{"255-byte short strings", 1000, func(t *testing.T, size int) ([]byte, int) {
			var out []byte
			for i := range size {
				out = append(out, costDelivery(t, uint64(i+1), long, long, longProps, []byte("x"), 0)...)
			}
			return out, size
		}, 2},
		{"tables nested to the limit", 300, func(t *testing.T, size int) ([]byte, int) {
			props := &proto.Properties{Headers: nestedHeaders()}
			var out []byte
			for i := range size {
				out = append(out, costDelivery(t, uint64(i+1), "", "q", props, []byte("x"), 0)...)
			}
			return out, size
		}, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Warm up with the larger traffic, so that what the client
			// keeps (its read buffer, its batch of deliveries, a
			// channel's body buffer) has grown already.
			warm, nWarm := tc.traffic(t, 2*tc.size)
			var costs [2]cost
			var counts [2]int
			for i, size := range []int{tc.size, 2 * tc.size} {
				traffic, n := tc.traffic(t, size)
				costs[i] = measureCost(t, warm, nWarm, traffic, n)
				counts[i] = n
				t.Logf("size %d: %d deliveries, %d wire bytes: %d bytes and %d allocations (%.2f B/wire byte)",
					size, n, costs[i].wire, costs[i].bytes, costs[i].allocs, float64(costs[i].bytes)/float64(costs[i].wire))
			}
			// Linear: doubling the traffic at most doubles the cost (a
			// little slack for the runtime's own allocations).
			require.LessOrEqual(t, float64(costs[1].bytes), 2.1*float64(costs[0].bytes)+64<<10, "bytes grow at most linearly")
			require.LessOrEqual(t, float64(costs[1].allocs), 2.1*float64(costs[0].allocs)+200, "allocations grow at most linearly")
			// And bounded by what arrived: a constant per delivery plus a
			// bounded share of each wire byte.
			for i, c := range costs {
				limit := uint64(tc.bound*float64(c.wire)) + uint64(counts[i])*512 + 256<<10
				require.LessOrEqual(t, c.bytes, limit, fmt.Sprintf("size %d", i))
			}
		})
	}
}
