package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// stderrLog is the library's logger in the command: its warnings (a
// message skipped for exceeding the maximum size, a delivery for an
// unknown consumer) become one line each on stderr, as errors do. Left
// out are what the command reports itself: losses and recoveries (the
// recovery watch) and returned messages (publish counts them through
// their confirmations).
type stderrLog struct{ e *env }

func (h stderrLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h stderrLog) Handle(_ context.Context, r slog.Record) error {
	for _, own := range []string{"amqp connection lost", "amqp recovery", "amqp message returned"} {
		if strings.HasPrefix(r.Message, own) {
			return nil
		}
	}
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(r.Message, "amqp "))
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	_, err := fmt.Fprintln(h.e.stderr, h.e.errLine(errors.New(b.String())))
	return err
}

func (h stderrLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stderrLog) WithGroup(string) slog.Handler      { return h }
