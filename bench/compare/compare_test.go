package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the scripted broker: run starts
// the broker by re-executing os.Executable(), which here is the test
// binary.
func TestMain(m *testing.M) {
	serveIfChild()
	os.Exit(m.Run())
}

// TestQuick runs the whole comparison in -quick mode, both clients, the
// scripted broker in its own process and, when one is reachable, the real
// RabbitMQ; every case must produce a row with no errors.
func TestQuick(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-quick", "-rounds", "1", "-json"}, &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("exit code %d, output is not JSON: %v\n%s", code, err, stdout.String())
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Errorf("%s %s: %s", r.Case, r.Client, r.Error)
		}
	}
	if code != 0 {
		t.Errorf("exit code %d", code)
	}
	t.Logf("RabbitMQ: %s", rep.Machine.RabbitMQ)

	skipped := map[string]bool{}
	for _, id := range rep.Skipped {
		skipped[id] = true
	}
	rows := map[string]caseSummary{}
	for _, cs := range rep.Summary {
		rows[cs.Case.ID] = cs
	}
	for _, c := range allCases(true) {
		if skipped[c.ID] {
			if c.Broker == brokerScripted {
				t.Errorf("%s: scripted case skipped", c.ID)
			}
			continue
		}
		cs, ok := rows[c.ID]
		if !ok {
			t.Errorf("%s: no row", c.ID)
			continue
		}
		if cs.Verdict == "n/a" || cs.Verdict == "" {
			t.Errorf("%s: no verdict", c.ID)
		}
		for _, name := range []string{clientWarren, clientAMQP091} {
			s := cs.Clients[name]
			if s == nil || s.Rounds != 1 || s.Errors != 0 {
				t.Errorf("%s %s: summary %+v", c.ID, name, s)
				continue
			}
			if c.Kind == kindIdle {
				if s.Idle == nil || s.Idle.BytesPerConn <= 0 || s.Idle.GoroutinesPerConn <= 0 {
					t.Errorf("%s %s: implausible idle figures %+v", c.ID, name, s.Idle)
				}
				continue
			}
			if s.MsgsPerSec <= 0 || s.CPUMicros <= 0 {
				t.Errorf("%s %s: implausible %+v", c.ID, name, s)
			}
			if c.Kind == kindLatency && (s.LatencyP50us <= 0 || s.LatencyP99us < s.LatencyP50us) {
				t.Errorf("%s %s: latency p50 %v p99 %v", c.ID, name, s.LatencyP50us, s.LatencyP99us)
			}
		}
	}

	// The table has a row per case and no error lines.
	var table bytes.Buffer
	writeTable(&table, rep)
	text := table.String()
	for _, cs := range rep.Summary {
		if !strings.Contains(text, "| "+cs.Case.ID+" |") {
			t.Errorf("table has no row for %s", cs.Case.ID)
		}
	}
	if strings.Contains(text, "ERROR") || strings.Contains(text, "| error |") {
		t.Errorf("table reports errors:\n%s", text)
	}
	t.Logf("\n%s", text)
}

func TestParseStreamQueue(t *testing.T) {
	size, n, ok := parseStreamQueue("bench.4096.200000")
	if !ok || size != 4096 || n != 200000 {
		t.Fatalf("got %d %d %v", size, n, ok)
	}
	for _, q := range []string{"bench.publish.sink", "bench.64", "other.64.10", "bench.64.0"} {
		if _, _, ok := parseStreamQueue(q); ok {
			t.Errorf("%q parsed", q)
		}
	}
}

func TestProcCPU(t *testing.T) {
	// Burn a little CPU and check our own /proc/<pid>/stat moves.
	before := procCPU(os.Getpid())
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	if after := procCPU(os.Getpid()); after < before || (after == 0 && x > 0) {
		t.Errorf("procCPU went from %v to %v", before, after)
	}
	if procCPU(0) != 0 {
		t.Error("procCPU(0) should be 0")
	}
}

func TestPercentileAndMedian(t *testing.T) {
	lat := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p := percentile(lat, 0.5); p != 5 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(lat, 0.99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}
