package main

import (
	"strconv"
	"strings"
	"unicode"

	"github.com/warren-amqp/warren"
)

// traceFunc returns the Config.Trace of a connection made with --trace:
// every frame sent or received becomes one line on stderr,
//
//	warren SUBCOMMAND: trace [ROLE] -> ch N METHOD {fields}
//
// "->" for a frame sent to the broker, "<-" for one received, ROLE only
// for perf, which makes several connections ("control", "producer 0",
// "consumer 1"). The library redacts the credentials (connection.start-ok's
// response, update-secret's secret); the URLs' passwords are scrubbed
// again here, and control characters a broker may put in a string are
// escaped, so that a line is always one line. Each line is one Write to
// the locked stderr, so it never interleaves with another.
//
// The library calls it with the connection's lock held: it formats and
// writes, nothing else.
func (e *env) traceFunc(role string) func(dir warren.Direction, channel uint16, frame string) {
	prefix := "warren " + e.name + ": trace "
	if role != "" {
		prefix += "[" + role + "] "
	}
	return func(dir warren.Direction, channel uint16, frame string) {
		var b strings.Builder
		b.Grow(len(prefix) + len(frame) + 16)
		b.WriteString(prefix)
		b.WriteString(dir.String())
		b.WriteString(" ch ")
		b.WriteString(strconv.FormatUint(uint64(channel), 10))
		b.WriteByte(' ')
		// "queue.declare &{…}" (a pointer printed with %+v) reads as
		// "queue.declare {…}".
		if key, fields, ok := strings.Cut(frame, " "); ok && strings.HasPrefix(fields, "&{") {
			frame = key + " " + fields[1:]
		}
		writeEscaped(&b, e.scrub(frame))
		b.WriteByte('\n')
		_, _ = e.stderr.Write([]byte(b.String()))
	}
}

// writeEscaped writes s with each control character Go-escaped (a line
// break becomes `\n`).
func writeEscaped(b *strings.Builder, s string) {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		b.WriteString(s)
		return
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
}
