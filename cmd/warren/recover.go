package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-amqp/warren"
)

// recoveryWatch follows the recovery of the connections of one long-running
// subcommand (consume, publish, perf). The library recovers a lost
// connection on its own; the watch bounds the wait (a connection that has
// not recovered within the timeout ends the subcommand with the last
// error), ends the subcommand at once when a connection is lost again
// before the subcommand made progress since the previous loss (a consumer
// that crashes the broker's queue, a publish the broker keeps killing the
// connection for: retrying would loop), reports each loss and recovery on
// stderr and keeps the recovery times for perf's report.
//
// A protocol error (a connection error the library does not count as
// recoverable) is not a loss: the connection ends and the subcommand with
// it, as before.
type recoveryWatch struct {
	e        *env
	timeout  time.Duration // 0: recovery off
	progress atomic.Int64  // bumped by the subcommand when it gets something done

	mu         sync.Mutex
	failure    error           // why the watch ended the subcommand
	lost       int             // losses seen
	recovering int             // connections recovering now
	lastErr    error           // while recovering: the loss, then each failed attempt's error
	durations  []time.Duration // loss to recovered, in order
	wg         sync.WaitGroup
}

// recoveryFlag adds --recovery-timeout to f and returns the watch it
// configures.
func (f *cmdFlags) recoveryFlag() *recoveryWatch {
	w := &recoveryWatch{e: f.e}
	f.e.watch = w
	f.DurationVar(&w.timeout, "recovery-timeout", time.Minute,
		"how long to wait for a lost connection to recover (redialling the --url addresses in turn)\nbefore giving up; 0: fail at once")
	return w
}

// config is the library's recovery configuration for the watched
// connections.
func (w *recoveryWatch) config() warren.Recovery {
	if w == nil || w.timeout <= 0 {
		return warren.Recovery{Disabled: true}
	}
	// A short maximum backoff: someone is waiting at the terminal.
	return warren.Recovery{Backoff: warren.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second}}
}

// made notes that the subcommand got something done (a message printed,
// published, confirmed or received).
func (w *recoveryWatch) made() { w.progress.Add(1) }

// watch follows conn's recovery events until the connection ends.
func (w *recoveryWatch) watch(name string, conn *warren.Connection) {
	if w.timeout <= 0 {
		return
	}
	// Lines name the connection, unless it is the command's only one
	// (then errLine's "warren SUBCOMMAND:" prefix names it already).
	label := name + ": "
	if name == "warren "+w.e.name {
		label = ""
	}
	events := conn.NotifyRecovery(make(chan warren.RecoveryEvent, 8))
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		lastLoss := int64(-1) // progress at the last loss
		var lostAt time.Time
		var lastErr error
		var deadline *time.Timer
		var expired <-chan time.Time
		stopDeadline := func() {
			if deadline != nil {
				deadline.Stop()
				deadline, expired = nil, nil
			}
		}
		defer stopDeadline()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return
				}
				switch ev.Kind {
				case warren.RecoveryLost:
					lastErr = ev.Err
					p := w.progress.Load()
					if p == lastLoss {
						w.fail(conn, fmt.Errorf("%sconnection lost again before any progress since it recovered: %w", label, ev.Err))
						continue
					}
					lastLoss, lostAt = p, time.Now()
					w.mu.Lock()
					w.lost++
					w.recovering++
					w.lastErr = ev.Err
					w.mu.Unlock()
					w.note("%sconnection lost (%v); recovering for up to %s", label, ev.Err, w.timeout)
					stopDeadline()
					deadline = time.NewTimer(w.timeout)
					expired = deadline.C
				case warren.RecoveryRetrying:
					if ev.Err != nil {
						lastErr = ev.Err
						w.mu.Lock()
						w.lastErr = ev.Err
						w.mu.Unlock()
					}
				case warren.RecoveryRecovered:
					stopDeadline()
					d := time.Since(lostAt)
					w.mu.Lock()
					w.recovering--
					w.durations = append(w.durations, d)
					w.lastErr = nil
					w.mu.Unlock()
					w.note("%srecovered after %s (%s)", label, d.Round(time.Millisecond), ev.Address)
					for _, nr := range ev.NotRestored {
						w.note("%snot restored: %v", label, nr)
					}
				case warren.RecoveryGaveUp:
					stopDeadline()
					w.mu.Lock()
					w.recovering--
					w.mu.Unlock()
				}
			case <-expired:
				deadline, expired = nil, nil
				w.fail(conn, fmt.Errorf("%sthe connection did not recover within %s: %w", label, w.timeout, lastErr))
			}
		}
	}()
}

// fail ends the subcommand: it records why and closes conn, which stops
// its recovery and fails every call waiting on it with ErrClosed.
func (w *recoveryWatch) fail(conn *warren.Connection, err error) {
	w.mu.Lock()
	if w.failure == nil {
		w.failure = err
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}

// recoveringWhy returns, while a connection recovers, the loss or the
// last failed attempt's error; else nil.
func (w *recoveryWatch) recoveringWhy() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.recovering == 0 {
		return nil
	}
	return w.lastErr
}

// note writes one line on stderr.
func (w *recoveryWatch) note(format string, args ...any) {
	fmt.Fprintln(w.e.stderr, w.e.errLine(fmt.Errorf(format, args...)))
}

// err returns why the watch ended the subcommand, or nil.
func (w *recoveryWatch) err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failure
}

// explain returns the watch's reason when it ended the subcommand (the
// subcommand's own error is then ErrClosed or a consequence of it), else
// err.
func (w *recoveryWatch) explain(err error) error {
	if err == nil {
		return nil
	}
	if werr := w.err(); werr != nil && !errors.Is(err, werr) {
		return werr
	}
	return err
}

// recoveryStats is what perf reports of the recoveries.
type recoveryStats struct {
	Losses     int     `json:"losses"`
	Recovering int     `json:"recovering"` // at the time of the report
	Recovered  int     `json:"recovered"`
	P50        float64 `json:"p50_ms"` // loss to recovered
	Max        float64 `json:"max_ms"`
}

// stats summarises the recoveries so far.
func (w *recoveryWatch) stats() recoveryStats {
	w.mu.Lock()
	d := slices.Clone(w.durations)
	s := recoveryStats{Losses: w.lost, Recovering: w.recovering, Recovered: len(d)}
	w.mu.Unlock()
	if len(d) > 0 {
		slices.Sort(d)
		s.P50 = float64(d[len(d)/2].Microseconds()) / 1000
		s.Max = float64(d[len(d)-1].Microseconds()) / 1000
	}
	return s
}

// watchErr returns err, or the recovery watch's reason when the watch
// ended the subcommand. It runs once the subcommand closed its
// connections.
func (e *env) watchErr(err error) error {
	if e.watch == nil {
		return err
	}
	e.watch.wait()
	return e.watch.explain(err)
}

// wait waits for the watch goroutines, which end with their connections.
func (w *recoveryWatch) wait() { w.wg.Wait() }
