package fuzz

// Hand-made vectors, written byte by byte from the AMQP 0-9-1 spec (section
// 4.2 framing, section 4.2.5 field types as RabbitMQ's errata reads them,
// section 4.2.6 content) rather than produced by Warren's encoder, so that
// they check the encoder and decoder against the spec and not against each
// other. TestHandMadeVectors decodes each one and checks its values.

// frameHeartbeat is a heartbeat frame: type 8, channel 0, size 0, end octet.
var frameHeartbeat = []byte{0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xCE}

// argsDeliver is basic.deliver's arguments: consumer-tag "ctag",
// delivery-tag 1, redelivered false, exchange "ex", routing-key "rk".
var argsDeliver = []byte{
	0x04, 'c', 't', 'a', 'g', // consumer-tag
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // delivery-tag
	0x00,           // redelivered
	0x02, 'e', 'x', // exchange
	0x02, 'r', 'k', // routing-key
}

// frameDeliver is a method frame on channel 1 carrying basic.deliver
// (class 60, method 60) with argsDeliver: 4 + 20 = 24 bytes of payload.
var frameDeliver = concat(
	[]byte{0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x18},
	[]byte{0x00, 0x3C, 0x00, 0x3C},
	argsDeliver,
	[]byte{0xCE},
)

// frameHeader is a content header on channel 1: class 60, weight 0, body
// size 5, flags content-type|delivery-mode (0x9000), content-type
// "text/plain", delivery-mode 2. Payload: 2+2+8+2+11+1 = 26 bytes.
var frameHeader = []byte{
	0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1A,
	0x00, 0x3C, // class basic
	0x00, 0x00, // weight
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // body size
	0x90, 0x00, // property flags
	0x0A, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n',
	0x02, // delivery-mode
	0xCE,
}

// frameBody is a body frame on channel 1 carrying "hello".
var frameBody = []byte{0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0xCE}

// streamDeliver is a delivered message followed by a heartbeat, as a
// broker sends it.
var streamDeliver = concat(frameDeliver, frameHeader, frameBody, frameHeartbeat)

// protocolHeader is what a client sends first, and what a server that
// refuses the client's version answers with.
var protocolHeader = []byte{'A', 'M', 'Q', 'P', 0x00, 0x00, 0x09, 0x01}

// fieldsEveryType is a field-table body (no length prefix) with one field
// of every type letter RabbitMQ knows, each named by its letter: 157 bytes.
var fieldsEveryType = concat(
	[]byte{0x01, 't', 't', 0x01},                                           // bool true
	[]byte{0x01, 'b', 'b', 0xFF},                                           // int8 -1
	[]byte{0x01, 'B', 'B', 0xFF},                                           // uint8 255
	[]byte{0x01, 's', 's', 0xFF, 0xFE},                                     // int16 -2
	[]byte{0x01, 'u', 'u', 0xFF, 0xFF},                                     // uint16 65535
	[]byte{0x01, 'I', 'I', 0xFF, 0xFF, 0xFF, 0xFD},                         // int32 -3
	[]byte{0x01, 'i', 'i', 0x00, 0x00, 0x00, 0x2A},                         // uint32 42
	[]byte{0x01, 'l', 'l', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFC}, // int64 -4
	[]byte{0x01, 'L', 'L', 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00}, // int64 (L) 1<<40
	[]byte{0x01, 'f', 'f', 0x3F, 0xC0, 0x00, 0x00},                         // float32 1.5
	[]byte{0x01, 'd', 'd', 0x3F, 0xF8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, // float64 1.5
	[]byte{0x01, 'D', 'D', 0x02, 0x00, 0x00, 0x01, 0x3A},                   // decimal 3.14
	[]byte{0x01, 'S', 'S', 0x00, 0x00, 0x00, 0x04, 't', 'e', 'x', 't'},     // string "text"
	[]byte{0x01, 'x', 'x', 0x00, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03},       // bytes 01 02 03
	[]byte{0x01, 'A', 'A', 0x00, 0x00, 0x00, 0x10, // array of 16 bytes:
		'I', 0x00, 0x00, 0x00, 0x01, // 1
		'S', 0x00, 0x00, 0x00, 0x03, 't', 'w', 'o', // "two"
		't', 0x00, // false
		'V'}, // void
	[]byte{0x01, 'T', 'T', 0x00, 0x00, 0x00, 0x00, 0x66, 0x38, 0x81, 0xD9}, // 2024-05-06T07:08:09Z
	[]byte{0x01, 'F', 'F', 0x00, 0x00, 0x00, 0x08, // table of 8 bytes:
		0x01, 'x', 'S', 0x00, 0x00, 0x00, 0x01, 'y'}, // x = "y"
	[]byte{0x01, 'V', 'V'}, // void
)

// tableEveryType is fieldsEveryType with its length prefix (0x9D = 157).
var tableEveryType = concat([]byte{0x00, 0x00, 0x00, 0x9D}, fieldsEveryType)

// tableEmpty is an empty field table.
var tableEmpty = []byte{0x00, 0x00, 0x00, 0x00}

// propsAll sets all fourteen basic properties (flags 0xFFFC).
var propsAll = concat(
	[]byte{0xFF, 0xFC},
	[]byte{0x10}, []byte("application/json"),
	[]byte{0x05}, []byte("utf-8"),
	[]byte{0x00, 0x00, 0x00, 0x08, 0x01, 'k', 'S', 0x00, 0x00, 0x00, 0x01, 'v'}, // headers k = "v"
	[]byte{0x02}, // delivery-mode persistent
	[]byte{0x05}, // priority
	[]byte{0x06}, []byte("corr-1"),
	[]byte{0x07}, []byte("reply.q"),
	[]byte{0x05}, []byte("60000"),
	[]byte{0x05}, []byte("mid-1"),
	[]byte{0x00, 0x00, 0x00, 0x00, 0x66, 0x38, 0x81, 0xD9}, // timestamp
	[]byte{0x04}, []byte("kind"),
	[]byte{0x05}, []byte("guest"),
	[]byte{0x07}, []byte("capture"),
	[]byte{0x02}, []byte("c1"),
)

// propsNone is a property list with no property.
var propsNone = []byte{0x00, 0x00}

// propsEmptyContentType sends content-type with an empty value.
var propsEmptyContentType = []byte{0x80, 0x00, 0x00}

// propsContinuation is delivery-mode 1 announced in a flags word with the
// continuation bit set, followed by an empty continuation word.
var propsContinuation = []byte{0x10, 0x01, 0x00, 0x00, 0x01}

// methodVector is one method frame payload split into its ids and
// arguments.
type methodVector struct {
	name   string
	class  uint16
	method uint16
	args   []byte
}

// argsConnectionStart: version 0-9, server-properties = tableEveryType,
// mechanisms "PLAIN", locales "en_US".
var argsConnectionStart = concat(
	[]byte{0x00, 0x09},
	tableEveryType,
	[]byte{0x00, 0x00, 0x00, 0x05}, []byte("PLAIN"),
	[]byte{0x00, 0x00, 0x00, 0x05}, []byte("en_US"),
)

// argsQueueDeclare: reserved 0, queue "q", durable, arguments
// {x-max-length: I 10} (a table of 1+12+1+4 = 18 bytes).
var argsQueueDeclare = concat(
	[]byte{0x00, 0x00},
	[]byte{0x01, 'q'},
	[]byte{0x02},
	[]byte{0x00, 0x00, 0x00, 0x12, 0x0C}, []byte("x-max-length"), []byte{'I', 0x00, 0x00, 0x00, 0x0A},
)

// concat joins byte slices into a new one.
func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// handMadeMethods are method payloads written from the spec's argument
// lists (class and method ids from its class definitions).
var handMadeMethods = []methodVector{
	{name: "connection.start", class: 10, method: 10, args: argsConnectionStart},
	{name: "connection.tune", class: 10, method: 30, args: []byte{0x07, 0xFF, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3C}},
	{name: "connection.close", class: 10, method: 50, args: concat(
		[]byte{0x01, 0x40, 0x11}, []byte("CONNECTION_FORCED"), []byte{0x00, 0x00, 0x00, 0x00})},
	{name: "channel.open", class: 20, method: 10, args: []byte{0x00}},
	{name: "channel.close", class: 20, method: 40, args: concat(
		[]byte{0x01, 0x94, 0x09}, []byte("NOT_FOUND"), []byte{0x00, 0x32, 0x00, 0x0A})},
	{name: "queue.declare", class: 50, method: 10, args: argsQueueDeclare},
	{name: "basic.publish", class: 60, method: 40, args: []byte{0x00, 0x00, 0x00, 0x02, 'r', 'k', 0x01}},
	{name: "basic.deliver", class: 60, method: 60, args: argsDeliver},
	{name: "basic.nack", class: 60, method: 120, args: []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x03}},
	{name: "tx.select", class: 90, method: 10, args: nil},
}

// handMadeStreams are the byte streams FuzzFrameReader starts from.
func handMadeStreams() [][]byte {
	return [][]byte{
		frameHeartbeat,
		streamDeliver,
		frameDeliver,
		frameHeader,
		frameBody,
		protocolHeader,
	}
}

// handMadeTables are the field-table encodings FuzzTable starts from.
func handMadeTables() [][]byte {
	return [][]byte{tableEveryType, fieldsEveryType, tableEmpty, argsConnectionStart[2:]}
}

// handMadeProperties are the property lists FuzzProperties starts from.
func handMadeProperties() [][]byte {
	return [][]byte{propsAll, propsNone, propsEmptyContentType, propsContinuation, frameHeader[19 : len(frameHeader)-1]}
}
