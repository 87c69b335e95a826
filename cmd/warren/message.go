package main

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/warren-amqp/warren"
	"github.com/warren-amqp/warren/proto"
)

// messageJSON formats a delivery as one JSON object (without newline):
//
//	{"exchange":…,"routing_key":…,"redelivered":…,"delivery_tag":…,
//	 "message_count":… (get only),"properties":{…},"headers":{…},
//	 "body":"…" | "body_base64":"…"}
//
// properties holds the properties present on the wire, snake_case; the
// headers key is there only when the message had a headers property.
func messageJSON(d *warren.Delivery, withCount bool) []byte {
	b := []byte(`{"exchange":`)
	b = appendJSONString(b, jsonSafe(d.Exchange))
	b = append(b, `,"routing_key":`...)
	b = appendJSONString(b, jsonSafe(d.RoutingKey))
	b = append(b, `,"redelivered":`...)
	b = strconv.AppendBool(b, d.Redelivered)
	b = append(b, `,"delivery_tag":`...)
	b = strconv.AppendUint(b, d.DeliveryTag, 10)
	if withCount {
		b = append(b, `,"message_count":`...)
		b = strconv.AppendUint(b, uint64(d.MessageCount), 10)
	}
	b = append(b, `,"properties":`...)
	b = appendPropertiesJSON(b, &d.Properties)
	p := &d.Properties
	if p.Flags&proto.FlagHeaders != 0 {
		b = append(b, `,"headers":`...)
		b = appendTableJSON(b, p.Headers)
	}
	if d.HeaderErr != nil {
		b = append(b, `,"headers_error":`...)
		b = appendJSONString(b, jsonSafe(d.HeaderErr.Error()))
	}
	if utf8.Valid(d.Body) {
		b = append(b, `,"body":`...)
		b = appendJSONString(b, string(d.Body))
	} else {
		b = append(b, `,"body_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, d.Body)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendPropertiesJSON appends the properties present (headers aside).
func appendPropertiesJSON(b []byte, p *proto.Properties) []byte {
	f := p.PresentFlags()
	b = append(b, '{')
	first := true
	key := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	str := func(flag proto.PropertyFlags, name, v string) {
		if f&flag != 0 {
			key(name)
			b = appendJSONString(b, jsonSafe(v))
		}
	}
	num := func(flag proto.PropertyFlags, name string, v uint8) {
		if f&flag != 0 {
			key(name)
			b = strconv.AppendUint(b, uint64(v), 10)
		}
	}
	str(proto.FlagContentType, "content_type", p.ContentType)
	str(proto.FlagContentEncoding, "content_encoding", p.ContentEncoding)
	num(proto.FlagDeliveryMode, "delivery_mode", p.DeliveryMode)
	num(proto.FlagPriority, "priority", p.Priority)
	str(proto.FlagCorrelationID, "correlation_id", p.CorrelationID)
	str(proto.FlagReplyTo, "reply_to", p.ReplyTo)
	str(proto.FlagExpiration, "expiration", p.Expiration)
	str(proto.FlagMessageID, "message_id", p.MessageID)
	if f&proto.FlagTimestamp != 0 {
		key("timestamp")
		b = append(b, '"')
		b = p.Timestamp.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, '"')
	}
	str(proto.FlagType, "type", p.Type)
	str(proto.FlagUserID, "user_id", p.UserID)
	str(proto.FlagAppID, "app_id", p.AppID)
	str(proto.FlagClusterID, "cluster_id", p.ClusterID)
	return append(b, '}')
}

// messageText formats a delivery as one readable line (without newline):
// the routing key, a tab, and the body as is when it is printable text,
// else quoted Go-style.
func messageText(d *warren.Delivery) []byte {
	b := []byte(d.RoutingKey)
	b = append(b, '\t')
	if printable(d.Body) {
		return append(b, d.Body...)
	}
	return strconv.AppendQuote(b, string(d.Body))
}

func printable(body []byte) bool {
	if !utf8.Valid(body) || len(body) > 0 && body[0] == '"' {
		return false
	}
	for _, r := range string(body) {
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
