package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

const publishAbout = `
Publishes BODY; with --lines, each line of stdin (without its line ending) as
one message; with neither, all of stdin as one message. --count N publishes
each message N times.

--property sets a message property by its AMQP name: content-type,
content-encoding, delivery-mode (1, 2, transient or persistent), priority,
correlation-id, reply-to, expiration (milliseconds, as text), message-id,
timestamp (RFC 3339 or Unix seconds), type, user-id, app-id, cluster-id.
A property given explicitly is sent even when empty or zero.

Headers: --headers-json sets them from a JSON object (integers become signed
64-bit 'l', other numbers doubles 'd', objects nested tables, arrays arrays,
null void; typed objects such as {"type":"T","value":"2024-05-06T07:08:09Z"}
give any field type, see the README); --header key=value then adds string
headers, replacing JSON ones of the same name.

--confirm puts the channel in confirm mode and waits for every confirmation:
the exit code is 1 if any message was nacked, returned or left unconfirmed.
--mandatory implies confirm mode too (the broker sends a message's
basic.return before its ack, so every return is known before warren exits):
a returned message makes the exit code 1 and is reported on stderr.

A lost connection (the broker restarted, an operator closed it, the network
failed) is recovered: warren reconnects, trying each --url in turn, for up to
--recovery-timeout, and publishes the rest. With --confirm, a message whose
confirmation the loss cut off is never re-sent silently: it counts as not
confirmed (exit code 1). A connection lost again before a message was
published since the last recovery ends warren with the error.`

// publishWindow bounds the confirmations outstanding at once.
const publishWindow = 10000

func runPublish(e *env, args []string) error {
	return e.watchErr(publish(e, args))
}

func publish(e *env, args []string) error {
	f := newFlags(e, "warren publish --exchange X --routing-key K [flags] [BODY]", publishAbout)
	exchange := f.String("exchange", "", "exchange to publish to (default: the default exchange \"\")")
	key := f.String("routing-key", "", "routing key")
	var props, headers stringList
	f.Var(&props, "property", "message property `name=value` (repeatable)")
	f.Var(&headers, "header", "string header `key=value` (repeatable)")
	headersJSON := f.String("headers-json", "", "headers as a `JSON` object")
	mandatory := f.Bool("mandatory", false, "ask the broker to return the message when no queue takes it (implies confirm mode)")
	confirm := f.Bool("confirm", false, "wait for publisher confirms; exit 1 unless every message is acked")
	count := f.Int("count", 1, "publish each message `N` times")
	lines := f.Bool("lines", false, "publish each line of stdin as one message")
	timeout := f.Duration("confirm-timeout", 30*time.Second, "how long to wait for outstanding confirmations at the end")
	watch := f.recoveryFlag()
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErrorf("more than one BODY argument (%q, %q…): quote the body", pos[0], pos[1])
	}
	if len(pos) == 1 && *lines {
		return usageErrorf("give either BODY or --lines, not both")
	}
	if *count < 0 {
		return usageErrorf("--count must not be negative")
	}
	p, err := parseProperties(props)
	if err != nil {
		return err
	}
	if *headersJSON != "" {
		t, err := parseTableJSON(*headersJSON)
		if err != nil {
			return usageErrorf("--headers-json: %v", err)
		}
		p.Headers = t
	}
	for _, kv := range headers {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageErrorf("--header %q: want key=value", kv)
		}
		p.Headers.Set(k, proto.String(v))
	}
	if len(p.Headers) > 0 {
		p.Flags |= proto.FlagHeaders
	}
	if _, err := p.Append(nil); err != nil { // a property too long, a header too deep…
		return usageErrorf("%v", err)
	}

	// The bodies, read lazily so that --lines streams.
	var next func() ([]byte, bool, error)
	switch {
	case len(pos) == 1:
		done := false
		next = func() ([]byte, bool, error) {
			if done {
				return nil, false, nil
			}
			done = true
			return []byte(pos[0]), true, nil
		}
	case *lines:
		r := bufio.NewReaderSize(e.stdin, 64<<10)
		next = func() ([]byte, bool, error) {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && errors.Is(err, io.EOF) {
				return nil, false, nil
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, false, fmt.Errorf("reading stdin: %w", err)
			}
			line = trimEOL(line)
			return line, true, nil
		}
	default:
		done := false
		next = func() ([]byte, bool, error) {
			if done {
				return nil, false, nil
			}
			done = true
			b, err := io.ReadAll(e.stdin)
			if err != nil {
				return nil, false, fmt.Errorf("reading stdin: %w", err)
			}
			return b, true, nil
		}
	}

	conn, ch, err := f.dialChannel()
	if err != nil {
		return err
	}
	defer e.closeConn(conn)
	confirming := *confirm || *mandatory
	if confirming {
		ctx, done := e.rpc("confirm.select")
		if err := done(ch.ConfirmSelect(ctx)); err != nil {
			return err
		}
	}
	// Each publish may wait --rpc-timeout for the connection to take it
	// (the broker blocks the connection, or stops reading), and through a
	// recovery besides.
	publishWait := e.rpcTimeout + watch.timeout
	bounded := func(do func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(e.ctx, publishWait)
		err := do(ctx)
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && e.ctx.Err() == nil
		cancel()
		if err == nil || !timedOut || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		why := "the connection takes no more bytes (the broker stopped reading?)"
		if conn.Blocked() {
			why = "the broker blocks the connection (connection.blocked: a resource alarm)"
		}
		return fmt.Errorf("the broker did not take a message within %s: %s", publishWait, why)
	}

	// The library reopens a channel the broker closed (say, on a publish to
	// a missing exchange) at the next call, silently: a channel error means
	// publishes were lost. (A recovered connection is not one: the
	// channel's close listeners hear only of channel errors and of the
	// end.)
	closes := ch.NotifyClose(make(chan error, 1))
	var channelErr error
	channelLost := func() bool {
		if channelErr == nil {
			select {
			case err, ok := <-closes:
				if !ok {
					err = warren.ErrClosed
				}
				channelErr = err
			default:
			}
		}
		return channelErr != nil
	}
	var st publishStats
	var pending []*warren.Confirmation
	settle := func(cf *warren.Confirmation, ctx context.Context) {
		acked, err := cf.Wait(ctx)
		switch {
		case errors.Is(err, warren.ErrNotSent): // refused for certain (404 on the exchange)
			st.notSent++
			if st.firstErr == nil {
				st.firstErr = err
			}
		case err != nil:
			st.unconfirmed++
			if st.firstErr == nil {
				st.firstErr = err
			}
		case !acked:
			st.nacked++
		case cf.Returned() != nil:
			st.returned++
			if st.firstReturn == nil {
				st.firstReturn = cf.Returned()
			}
		default:
			st.acked++
		}
	}
	var pubErr error
publishing:
	for {
		body, ok, err := next()
		if err != nil {
			pubErr = err
			break
		}
		if !ok {
			break
		}
		for i := 0; i < *count; i++ {
			msg := warren.Publishing{Mandatory: *mandatory, Properties: p, Body: body}
			if !confirming {
				if err := bounded(func(ctx context.Context) error { return ch.Publish(ctx, *exchange, *key, msg) }); err != nil {
					pubErr = err
					break publishing
				}
				st.sent++
				watch.made()
				if channelLost() {
					break publishing
				}
				continue
			}
			var cf *warren.Confirmation
			err := bounded(func(ctx context.Context) (err error) {
				cf, err = ch.PublishWithConfirm(ctx, *exchange, *key, msg)
				return err
			})
			if err != nil {
				pubErr = err
				break publishing
			}
			st.sent++
			watch.made()
			pending = append(pending, cf)
			if channelLost() {
				break publishing
			}
			if len(pending) >= publishWindow {
				ctx, cancel := context.WithTimeout(e.ctx, publishWait)
				settle(pending[0], ctx)
				cancel()
				pending = pending[1:]
			}
		}
	}
	if len(pending) > 0 {
		ctx, cancel := context.WithTimeout(e.ctx, *timeout)
		for _, cf := range pending {
			settle(cf, ctx)
		}
		cancel()
	}
	if pubErr == nil && !confirming {
		// A round trip on the channel: a channel error caused by the
		// publishes arrives before its answer and fails it.
		ctx, done := e.rpc("basic.qos")
		if err := done(ch.Qos(ctx, warren.QosOptions{})); err != nil {
			pubErr = err
		}
	}
	if pubErr == nil && channelLost() {
		pubErr = fmt.Errorf("the broker closed the channel while warren was publishing: %w", channelErr)
	}
	if pubErr != nil {
		if st.sent > 0 {
			return fmt.Errorf("failed after %s: %w", st.handed(confirming), pubErr)
		}
		return pubErr
	}
	if err := st.failure(); err != nil {
		return err
	}
	// Close cleanly so that the broker has every publish before we report.
	ctx, cancel := context.WithTimeout(context.Background(), e.closeWait())
	defer cancel()
	if err := conn.Close(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer from the broker to connection.close within %s", e.closeWait())
		}
		return fmt.Errorf("closing the connection: %w", err)
	}
	if err := conn.Err(); err != nil { // the broker closed it: publishes may be lost
		return fmt.Errorf("failed after %s: %w", st.handed(confirming), err)
	}
	target := fmt.Sprintf("exchange %q routing key %q", *exchange, *key)
	if confirming {
		fmt.Fprintf(e.stdout, "published %d message(s) to %s, %d confirmed\n", st.sent, target, st.acked)
	} else {
		fmt.Fprintf(e.stdout, "published %d message(s) to %s\n", st.sent, target)
	}
	return nil
}

type publishStats struct {
	sent, acked, nacked, returned, unconfirmed, notSent int
	firstReturn                                         *warren.Return
	firstErr                                            error
}

// handed says what became of the messages handed to the broker, for an
// error: with confirms, only the unconfirmed may be lost.
func (st *publishStats) handed(confirming bool) string {
	if !confirming {
		return fmt.Sprintf("%d message(s) were handed to the broker (they may be lost)", st.sent)
	}
	unconfirmed := st.sent - st.acked - st.nacked - st.returned - st.notSent
	return fmt.Sprintf("%d message(s) were handed to the broker (%d confirmed, %d nacked, %d returned, %d refused and not sent; %d unconfirmed, which may be lost)",
		st.sent, st.acked, st.nacked, st.returned, st.notSent, unconfirmed)
}

// failure summarises what went wrong in one line, or returns nil.
func (st *publishStats) failure() error {
	var parts []string
	if st.returned > 0 {
		r := st.firstReturn
		parts = append(parts, fmt.Sprintf("%d of %d message(s) returned by the broker (%d %s, exchange %q, routing key %q)",
			st.returned, st.sent, uint16(r.ReplyCode), r.ReplyText, r.Exchange, r.RoutingKey))
	}
	if st.nacked > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d message(s) nacked by the broker", st.nacked, st.sent))
	}
	if st.notSent > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d message(s) refused by the broker and not sent (%v)", st.notSent, st.sent, st.firstErr))
	}
	if st.unconfirmed > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d message(s) not confirmed, which may be lost (%v)", st.unconfirmed, st.sent, st.firstErr))
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New(strings.Join(parts, "; "))
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// parseProperties parses --property name=value flags. Properties given
// explicitly are flagged so that zero values are sent too.
func parseProperties(kvs []string) (proto.Properties, error) {
	var p proto.Properties
	for _, kv := range kvs {
		name, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, usageErrorf("--property %q: want name=value", kv)
		}
		name = strings.ReplaceAll(strings.ToLower(name), "_", "-")
		bad := func(want string) error {
			return usageErrorf("--property %s=%q: %s", name, v, want)
		}
		switch name {
		case "content-type":
			p.ContentType, p.Flags = v, p.Flags|proto.FlagContentType
		case "content-encoding":
			p.ContentEncoding, p.Flags = v, p.Flags|proto.FlagContentEncoding
		case "delivery-mode":
			switch strings.ToLower(v) {
			case "1", "transient", "non-persistent":
				p.DeliveryMode = proto.Transient
			case "2", "persistent":
				p.DeliveryMode = proto.Persistent
			default:
				return p, bad("want 1 (transient) or 2 (persistent)")
			}
			p.Flags |= proto.FlagDeliveryMode
		case "priority":
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return p, bad("want an integer from 0 to 255")
			}
			p.Priority, p.Flags = uint8(n), p.Flags|proto.FlagPriority
		case "correlation-id":
			p.CorrelationID, p.Flags = v, p.Flags|proto.FlagCorrelationID
		case "reply-to":
			p.ReplyTo, p.Flags = v, p.Flags|proto.FlagReplyTo
		case "expiration":
			p.Expiration, p.Flags = v, p.Flags|proto.FlagExpiration
		case "message-id":
			p.MessageID, p.Flags = v, p.Flags|proto.FlagMessageID
		case "timestamp":
			t, err := parseTimestamp(v)
			if err != nil {
				return p, bad("want an RFC 3339 time or non-negative Unix seconds")
			}
			p.Timestamp, p.Flags = t, p.Flags|proto.FlagTimestamp
		case "type":
			p.Type, p.Flags = v, p.Flags|proto.FlagType
		case "user-id":
			p.UserID, p.Flags = v, p.Flags|proto.FlagUserID
		case "app-id":
			p.AppID, p.Flags = v, p.Flags|proto.FlagAppID
		case "cluster-id":
			p.ClusterID, p.Flags = v, p.Flags|proto.FlagClusterID
		case "headers":
			return p, usageErrorf("--property headers: use --header or --headers-json")
		default:
			return p, usageErrorf("--property %q: unknown property (want content-type, content-encoding, delivery-mode, priority, correlation-id, reply-to, expiration, message-id, timestamp, type, user-id, app-id or cluster-id)", name)
		}
	}
	return p, nil
}

func parseTimestamp(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return time.Time{}, errors.New("negative")
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err == nil && t.Unix() < 0 {
		return time.Time{}, errors.New("before 1970")
	}
	return t, err
}
