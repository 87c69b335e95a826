package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestIdleVerdict checks the idle-footprint case's target and table with
// made-up figures (no broker needed).
func TestIdleVerdict(t *testing.T) {
	c := idleCase(false)
	if c.N != idleConns || idleCase(true).N != idleConnsQuick {
		t.Fatalf("connections: %d and %d", c.N, idleCase(true).N)
	}
	results := func(wBytes, wGor, aBytes float64) []runResult {
		return []runResult{
			{Case: c.ID, Client: clientWarren, Round: 1, Idle: &idleFigures{Conns: c.N, BytesPerConn: wBytes, GoroutinesPerConn: wGor}},
			{Case: c.ID, Client: clientAMQP091, Round: 1, Idle: &idleFigures{Conns: c.N, BytesPerConn: aBytes, GoroutinesPerConn: 2}},
		}
	}
	clients := []client{warrenClient{}, amqpClient{}}
	for _, tc := range []struct {
		name                 string
		wBytes, wGor, aBytes float64
		want                 []string // substrings of the verdict
	}{
		{"met", 9000, 2, 23000, []string{"met"}},
		{"bytes", 90000, 2, 23000, []string{"B/conn 90000 > 12 KiB", "B/conn 3.91×"}},
		{"goroutines", 9000, 3, 23000, []string{"goroutines/conn 3.00 > 2"}},
		{"not below amqp091", 9000, 2, 9000, []string{"B/conn 1.00×"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := summarize([]caseDef{c}, clients, results(tc.wBytes, tc.wGor, tc.aBytes))
			if len(sum) != 1 {
				t.Fatalf("%d rows", len(sum))
			}
			for _, w := range tc.want {
				if !strings.Contains(sum[0].Verdict, w) {
					t.Errorf("verdict %q lacks %q", sum[0].Verdict, w)
				}
			}
			var b bytes.Buffer
			writeTable(&b, report{Summary: sum})
			if !strings.Contains(b.String(), "| "+c.ID+" | 300 |") || strings.Contains(b.String(), "msgs/s warren") {
				t.Errorf("table:\n%s", b.String())
			}
		})
	}
}

func TestParseIdleOutput(t *testing.T) {
	fig, err := parseIdleOutput("noise\n" + idleResultTag + `{"conns":20,"bytes_per_conn":1234.5,"goroutines_per_conn":2}` + "\n")
	if err != nil || fig.Conns != 20 || fig.BytesPerConn != 1234.5 || fig.GoroutinesPerConn != 2 {
		t.Fatalf("got %+v, %v", fig, err)
	}
	if _, err := parseIdleOutput("nothing\n"); err == nil {
		t.Error("no result line accepted")
	}
}
