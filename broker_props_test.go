package warren

// Integration tests of message properties and header field types against
// a real RabbitMQ (see integration_test.go and broker_ops_test.go).

import (
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-amqp/warren/proto"
)

// everyFieldType is a headers table with a value of every field type
// Warren writes (t b B s u I i l f d D S x A T F V), at their edges.
func everyFieldType() proto.Table {
	ts := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	return proto.Table{
		{Name: "t-true", Value: proto.Bool(true)},
		{Name: "t-false", Value: proto.Bool(false)},
		{Name: "b-min", Value: proto.Int8(math.MinInt8)},
		{Name: "b-max", Value: proto.Int8(math.MaxInt8)},
		{Name: "B-max", Value: proto.Uint8(math.MaxUint8)},
		{Name: "s-min", Value: proto.Int16(math.MinInt16)},
		{Name: "u-max", Value: proto.Uint16(math.MaxUint16)},
		{Name: "I-min", Value: proto.Int32(math.MinInt32)},
		{Name: "i-max", Value: proto.Uint32(math.MaxUint32)},
		{Name: "l-min", Value: proto.Int64(math.MinInt64)},
		{Name: "l-max", Value: proto.Int64(math.MaxInt64)},
		{Name: "f", Value: proto.Float32(-3.25)},
		{Name: "d", Value: proto.Float64(math.Pi)},
		{Name: "d-smallest", Value: proto.Float64(math.SmallestNonzeroFloat64)},
		{Name: "D", Value: proto.DecimalValue(proto.Decimal{Scale: 3, Value: -1234567})},
		{Name: "S", Value: proto.String("héllo, wörld \x00 with a NUL")},
		{Name: "S-empty", Value: proto.String("")},
		{Name: "x", Value: proto.Bytes([]byte{0, 1, 0x7f, 0x80, 0xff})},
		{Name: "x-empty", Value: proto.Bytes(nil)},
		{Name: "A", Value: proto.ArrayValue(
			proto.Int32(1), proto.String("two"), proto.Bool(true), proto.Void(),
			proto.ArrayValue(), proto.ArrayValue(proto.Int64(-3)),
			proto.TableValue(proto.Table{{Name: "in-array", Value: proto.Uint8(9)}}),
		)},
		{Name: "A-empty", Value: proto.ArrayValue()},
		{Name: "T", Value: proto.Timestamp(ts)},
		{Name: "F", Value: proto.TableValue(proto.Table{
			{Name: "nested", Value: proto.String("yes")},
			{Name: "deeper", Value: proto.TableValue(proto.Table{{Name: "n", Value: proto.Int16(-2)}})},
		})},
		{Name: "F-empty", Value: proto.TableValue(nil)},
		{Name: "V", Value: proto.Void()},
	}
}

// allProperties sets every one of the fourteen basic properties.
func allProperties(t *testing.T) proto.Properties {
	user, _ := brokerUser(t)
	return proto.Properties{
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		Headers:         everyFieldType(),
		DeliveryMode:    proto.Persistent,
		Priority:        7,
		CorrelationID:   "corr-42",
		ReplyTo:         "warren.replies",
		Expiration:      "600000",
		MessageID:       "msg-42",
		Timestamp:       time.Date(2024, 2, 29, 12, 0, 1, 0, time.UTC),
		Type:            "order.created",
		UserID:          user, // RabbitMQ refuses a user-id other than the login's
		AppID:           "warren-tests",
		ClusterID:       "cluster-a",
	}
}

// RabbitMQ passes a message's properties through untouched (it forwards
// the encoded property list as it came, decoding it only to read what it
// needs): all fourteen properties, cluster-id included, and every header
// field type come back exactly as sent, field order included.
func TestBrokerPropertiesRoundTrip(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)

	sent := allProperties(t)
	require.Equal(t, proto.AllPropertyFlags, sent.PresentFlags(), "every property is set")
	body := []byte("\x00every property\xff")
	publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Properties: sent, Body: body})
	d, ok, err := ch.Get(ctx, q.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.HeaderErr)
	require.Equal(t, body, d.Body)

	want := sent
	want.Flags = proto.AllPropertyFlags // decoding records what was on the wire
	require.Equal(t, want, d.Properties)
	require.Equal(t, want.Headers, d.Properties.Headers)

	t.Run("through a consumer", func(t *testing.T) {
		publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Properties: sent, Body: body})
		cons, err := ch.Consume(ctx, q.Name, ConsumeOptions{NoAck: true})
		require.NoError(t, err)
		d := recv(t, ctx, cons)
		require.Equal(t, want, d.Properties)
		require.Equal(t, body, d.Body)
		require.NoError(t, cons.Cancel(ctx))
		requireEnded(t, cons)
	})

	t.Run("zero values forced by Flags", func(t *testing.T) {
		// An empty content-type and priority 0 are sent when flagged.
		p := proto.Properties{Flags: proto.FlagContentType | proto.FlagPriority | proto.FlagHeaders}
		publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Properties: p})
		d, ok, err := ch.Get(ctx, q.Name, true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, p, d.Properties)
		require.Empty(t, d.Body)
	})

	t.Run("user-id of another user", func(t *testing.T) {
		other := sent
		other.UserID = "somebody-else"
		cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Properties: other})
		require.NoError(t, err)
		_, err = cf.Wait(ctx)
		ce := requireChannelErr(t, err, PreconditionFailed)
		require.Contains(t, ce.Text, "user_id property set to 'somebody-else'")
	})

	t.Run("L is passed through", func(t *testing.T) {
		// RabbitMQ decodes the letter L (as py-amqp writes it) but never
		// needs to re-encode it here, so it comes back as L.
		p := proto.Properties{Headers: proto.Table{{Name: "L", Value: proto.Int64L(-5)}}}
		publishConfirmed(t, ctx, ch, "", q.Name, Publishing{Properties: p})
		d, ok, err := ch.Get(ctx, q.Name, true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, p.Headers, d.Properties.Headers)
	})
}

// Dead-lettering makes RabbitMQ change the headers (it adds x-death) and
// so re-encode the whole property list with its own encoder: the test
// records what that does to each field type.
func TestBrokerPropertiesReencodedByDeadLettering(t *testing.T) {
	ctx := brokerCtx(t)
	c := dialTest(t, Config{})
	ch := confirmChannel(t, ctx, c)
	dlq, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
	require.NoError(t, err)
	src, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true, Arguments: proto.Table{
		{Name: "x-dead-letter-exchange", Value: proto.String("")},
		{Name: "x-dead-letter-routing-key", Value: proto.String(dlq.Name)},
	}})
	require.NoError(t, err)

	sent := allProperties(t)
	// L, which only py-amqp writes, is not one of Warren's usual letters:
	// RabbitMQ reads it as a signed 64-bit integer and writes it back as l.
	sent.Headers = append(sent.Headers, proto.Field{Name: "L", Value: proto.Int64L(-5)})
	publishConfirmed(t, ctx, ch, "", src.Name, Publishing{Properties: sent, Body: []byte("dead")})
	d, ok, err := ch.Get(ctx, src.Name, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Reject(false))
	var dead Delivery
	require.Eventually(t, func() bool {
		dead, ok, err = ch.Get(ctx, dlq.Name, true)
		require.NoError(t, err)
		return ok
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "dead", string(dead.Body))
	require.NoError(t, dead.HeaderErr)

	got := dead.Properties
	xdeath, ok := got.Headers.Get("x-death")
	require.True(t, ok, "RabbitMQ adds x-death")
	deaths, ok := xdeath.AsArray()
	require.True(t, ok)
	require.Len(t, deaths, 1)
	death, ok := deaths[0].AsTable()
	require.True(t, ok)
	reason, _ := death.Get("reason")
	require.Equal(t, proto.String("rejected"), reason)
	queue, _ := death.Get("queue")
	require.Equal(t, proto.String(src.Name), queue)
	count, _ := death.Get("count")
	require.Equal(t, proto.Int64(1), count, "RabbitMQ writes count as l")
	origExp, _ := death.Get("original-expiration")
	require.Equal(t, proto.String(sent.Expiration), origExp, "the per-message TTL moves into x-death")
	for _, name := range []string{"x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"} {
		_, ok := got.Headers.Get(name)
		require.True(t, ok, name)
	}

	// Apart from the headers RabbitMQ adds and the expiration it removes,
	// its encoder writes every field type back as it read it: the same
	// letters (b stays signed, s stays signed, i stays unsigned, …) and
	// the same values. What changes is the order: the top-level headers
	// table comes back sorted by field name (byte order), x-death and
	// x-first-death-* among them; nested tables keep their order.
	require.True(t, sort.SliceIsSorted(got.Headers, func(i, j int) bool { return got.Headers[i].Name < got.Headers[j].Name }),
		"RabbitMQ sorts the re-encoded headers")
	sorted := append(proto.Table(nil), sent.Headers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	sorted.Set("L", proto.Int64(-5)) // the one conversion: L becomes l
	var mine proto.Table
	for _, f := range got.Headers {
		switch f.Name {
		case "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason":
		default:
			mine = append(mine, f)
		}
	}
	require.Equal(t, sorted, mine)
	want := sent
	want.Expiration = ""
	want.Headers = got.Headers
	want.Flags = proto.AllPropertyFlags &^ proto.FlagExpiration
	require.Equal(t, want, got)
}

// RabbitMQ 3.10 decodes every published property list (to check user-id
// and expiration), and its decoder cannot read a non-finite float (Erlang
// has no infinities or NaN): an f or d header holding ±Inf or NaN crashes
// the channel, and the broker closes the whole connection with 541
// INTERNAL_ERROR. Warren encodes such values faithfully; RabbitMQ cannot
// take them.
func TestBrokerNonFiniteFloatHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    proto.Value
	}{
		{"f +Inf", proto.Float32(float32(math.Inf(1)))},
		{"d NaN", proto.Float64(math.NaN())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := brokerCtx(t)
			c := dialTest(t, Config{})
			ch := confirmChannel(t, ctx, c)
			q, err := ch.QueueDeclare(ctx, "", QueueOptions{Exclusive: true})
			require.NoError(t, err)
			cf, err := ch.PublishWithConfirm(ctx, "", q.Name, Publishing{Properties: proto.Properties{
				Headers: proto.Table{{Name: "x", Value: tc.v}},
			}})
			require.NoError(t, err)
			_, err = cf.Wait(ctx)
			require.ErrorIs(t, err, ErrMaybeSent)
			ce := requireConnErr(t, err, proto.InternalError)
			require.Equal(t, "INTERNAL_ERROR", ce.Text)
			<-c.Done()
			require.False(t, c.IsAlive())
		})
	}
}
