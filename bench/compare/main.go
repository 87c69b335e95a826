// Command compare runs Warren and github.com/rabbitmq/amqp091-go on the
// same work in the same run and prints one table of medians and ratios.
//
// Client-bound cases talk to a scripted broker, this binary re-executed
// as a separate process, so that the client is the bottleneck and the
// broker's CPU is not counted as the client's. Broker-bound cases talk to
// a real RabbitMQ ($AMQP_URL or amqp://guest:guest@127.0.0.1:5672/).
// The rabbitmq/idle-footprint case (idle.go) measures memory and
// goroutines per idle connection instead of messages, each client in a
// child process of its own, and has a table of its own.
//
//	cd bench/compare && go run . -rounds 3
//
// Flags:
//
//	-cases REGEXP    only the cases whose id matches (e.g. 'scripted/consume')
//	-clients LIST    warren,amqp091 (default both)
//	-rounds N        runs of each pair, alternating which client goes first (3)
//	-quick           small counts, for a smoke test
//	-json            machine-readable output instead of the table
//	-jsonfile FILE   also write the machine-readable report to FILE
//	-rabbitmq MODE   auto (skip the broker-bound cases when unreachable), on, off
//	-profile DIR     write a CPU profile and before/after allocation profiles of
//	                 every measured region to DIR
//	-v               print each run as it finishes (to stderr)
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

var pid = os.Getpid()

func main() {
	serveIfChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func timeAfter(seconds int) <-chan time.Time { return time.After(time.Duration(seconds) * time.Second) }

// runResult is one client's run of one case in one round.
type runResult struct {
	Case          string  `json:"case"`
	Client        string  `json:"client"`
	Round         int     `json:"round"`
	Messages      int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MsgsPerSec    float64 `json:"msgs_per_sec"`
	CPUMicros     float64 `json:"cpu_us_per_msg"`
	AllocsPerMsg  float64 `json:"allocs_per_msg"`
	BytesPerMsg   float64 `json:"bytes_per_msg"`
	BrokerCPUPct  float64 `json:"broker_cpu_pct_of_client,omitempty"` // scripted broker CPU / client CPU × 100
	LatencyP50us  float64 `json:"latency_p50_us,omitempty"`
	LatencyP99us  float64 `json:"latency_p99_us,omitempty"`
	Error         string  `json:"error,omitempty"`
	brokerCPUTime time.Duration

	Idle *idleFigures `json:"idle,omitempty"` // the idle-footprint case (idle.go)
}

// clientSummary holds the medians over rounds of one client on one case.
type clientSummary struct {
	Rounds       int     `json:"rounds"` // successful rounds
	Errors       int     `json:"errors"`
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	CPUMicros    float64 `json:"cpu_us_per_msg"`
	AllocsPerMsg float64 `json:"allocs_per_msg"`
	BytesPerMsg  float64 `json:"bytes_per_msg"`
	BrokerCPUPct float64 `json:"broker_cpu_pct_of_client,omitempty"`
	LatencyP50us float64 `json:"latency_p50_us,omitempty"`
	LatencyP99us float64 `json:"latency_p99_us,omitempty"`
	MinMsgsPerS  float64 `json:"min_msgs_per_sec"`
	MaxMsgsPerS  float64 `json:"max_msgs_per_sec"`

	Idle *idleSummary `json:"idle,omitempty"` // the idle-footprint case (idle.go)
}

// caseSummary is one row of the table.
type caseSummary struct {
	Case    caseDef                   `json:"case"`
	Clients map[string]*clientSummary `json:"clients"`
	// Ratios Warren / amqp091-go of the medians (throughput: higher is
	// better for Warren; CPU and allocations: lower is better).
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
	CPURatio        float64 `json:"cpu_ratio,omitempty"`
	AllocRatio      float64 `json:"alloc_ratio,omitempty"`
	Target          target  `json:"target"`
	Verdict         string  `json:"verdict"` // "met", "missed: …" or "n/a"

	IdleBytesRatio float64 `json:"idle_bytes_ratio,omitempty"` // idle-footprint: bytes per connection, Warren / amqp091-go
}

type machineInfo struct {
	CPU         string `json:"cpu"`
	CPUs        int    `json:"cpus"`
	GoVersion   string `json:"go_version"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	AMQP091     string `json:"amqp091_go_version"`
	LoadBefore  string `json:"loadavg_before"`
	LoadAfter   string `json:"loadavg_after"`
	RabbitMQ    string `json:"rabbitmq"`
	RabbitMQURL string `json:"rabbitmq_url,omitempty"`
	Started     string `json:"started"`
	Quick       bool   `json:"quick"`
	Rounds      int    `json:"rounds"`
}

type report struct {
	Machine machineInfo   `json:"machine"`
	Results []runResult   `json:"results"`
	Summary []caseSummary `json:"summary"`
	Skipped []string      `json:"skipped,omitempty"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	casesRe := fs.String("cases", "", "only cases whose id matches this regexp")
	clientsFlag := fs.String("clients", clientWarren+","+clientAMQP091, "clients to run, comma-separated")
	rounds := fs.Int("rounds", 3, "runs of each pair")
	quick := fs.Bool("quick", false, "small counts (smoke test)")
	jsonOut := fs.Bool("json", false, "machine-readable output")
	jsonFile := fs.String("jsonfile", "", "also write the machine-readable report to this file")
	rabbit := fs.String("rabbitmq", "auto", "broker-bound cases: auto, on or off")
	profileDir := fs.String("profile", "", "write pprof files of every measured region to this directory")
	verbose := fs.Bool("v", false, "print each run to stderr")
	warrenHandler := fs.Bool("warren-handler", false, "Warren consumers use ConsumeOptions.Handler instead of the Deliveries channel")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "compare: "+format+"\n", a...)
		return 1
	}
	re, err := regexp.Compile(*casesRe)
	if err != nil {
		return fail("-cases: %v", err)
	}
	var clients []client
	for _, name := range strings.Split(*clientsFlag, ",") {
		cl, err := clientByName(strings.TrimSpace(name), *warrenHandler)
		if err != nil {
			return fail("-clients: %v", err)
		}
		clients = append(clients, cl)
	}
	if *rounds < 1 {
		return fail("-rounds must be at least 1")
	}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return fail("%v", err)
		}
		runtime.MemProfileRate = 16 << 10
	}

	rep := report{Machine: machine(*quick, *rounds)}
	e := &env{amqpURL: os.Getenv("AMQP_URL")}
	if e.amqpURL == "" {
		e.amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	var cases []caseDef
	for _, c := range allCases(*quick) {
		if re.MatchString(c.ID) {
			cases = append(cases, c)
		}
	}
	needScripted := slices.ContainsFunc(cases, func(c caseDef) bool { return c.Broker == brokerScripted })
	needRabbit := slices.ContainsFunc(cases, func(c caseDef) bool { return c.Broker == brokerRabbit })
	if needRabbit {
		switch *rabbit {
		case "off":
			rep.Machine.RabbitMQ = "off"
		case "auto", "on":
			if err := probe(e.amqpURL); err != nil {
				if *rabbit == "on" {
					return fail("RabbitMQ at %s: %v", redact(e.amqpURL), err)
				}
				rep.Machine.RabbitMQ = "unreachable: " + err.Error()
			} else {
				rep.Machine.RabbitMQ = "reachable"
				rep.Machine.RabbitMQURL = redact(e.amqpURL)
			}
		default:
			return fail("-rabbitmq: want auto, on or off")
		}
		if rep.Machine.RabbitMQ != "reachable" {
			cases = slices.DeleteFunc(cases, func(c caseDef) bool {
				if c.Broker == brokerRabbit {
					rep.Skipped = append(rep.Skipped, c.ID)
					return true
				}
				return false
			})
		}
	}
	if len(cases) == 0 {
		return fail("no cases to run")
	}
	if needScripted {
		b, err := startScriptedBroker(startChild)
		if err != nil {
			return fail("%v", err)
		}
		defer b.Stop()
		e.scripted = b
	}

	for round := 1; round <= *rounds; round++ {
		for _, c := range cases {
			order := slices.Clone(clients)
			if round%2 == 0 {
				slices.Reverse(order)
			}
			for _, cl := range order {
				r := runOne(e, cl, c, round, *profileDir)
				rep.Results = append(rep.Results, r)
				if *verbose && r.Idle != nil {
					fmt.Fprintf(stderr, "round %d %-40s %-8s %8.0f B/conn %5.2f goroutines/conn\n", round, c.ID, r.Client, r.Idle.BytesPerConn, r.Idle.GoroutinesPerConn)
				} else if *verbose {
					fmt.Fprintf(stderr, "round %d %-40s %-8s %10.0f msg/s %7.2f µs/msg %7.2f allocs/msg %8.0f B/msg broker %5.1f%% %s\n",
						round, c.ID, r.Client, r.MsgsPerSec, r.CPUMicros, r.AllocsPerMsg, r.BytesPerMsg, r.BrokerCPUPct, r.Error)
				}
			}
		}
	}
	rep.Machine.LoadAfter = loadavg()
	rep.Summary = summarize(cases, clients, rep.Results)

	if *jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			return fail("%v", err)
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail("%v", err)
		}
	} else {
		writeTable(stdout, rep)
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return 1
		}
	}
	return 0
}

func runOne(e *env, cl client, c caseDef, round int, profileDir string) runResult {
	if c.Kind == kindIdle {
		return runIdle(e, cl, c, round) // in a child process of its own
	}
	m := &meter{profileDir: profileDir}
	if c.Broker == brokerScripted {
		m.childPID = e.scripted.cmd.pid
	}
	m.label = fmt.Sprintf("%s-%s-r%d", cl.Name(), strings.NewReplacer("/", "_", "+", "").Replace(c.ID), round)
	out, err := e.runCase(cl, c, m)
	if err == nil && m.err != nil {
		err = fmt.Errorf("profiling: %w", m.err)
	}
	r := runResult{Case: c.ID, Client: cl.Name(), Round: round, Messages: out.msgs}
	if err != nil {
		r.Error = err.Error()
		return r
	}
	n := float64(out.msgs)
	r.Seconds = m.wall.Seconds()
	r.MsgsPerSec = n / m.wall.Seconds()
	r.CPUMicros = float64(m.cpu.Microseconds()) / n
	r.AllocsPerMsg = float64(m.mallocs) / n
	r.BytesPerMsg = float64(m.bytes) / n
	r.brokerCPUTime = m.childCPU
	if c.Broker == brokerScripted && m.cpu > 0 {
		r.BrokerCPUPct = 100 * float64(m.childCPU) / float64(m.cpu)
	}
	if len(out.latencies) > 0 {
		lat := slices.Clone(out.latencies)
		slices.Sort(lat)
		r.LatencyP50us = float64(percentile(lat, 0.50)) / 1e3
		r.LatencyP99us = float64(percentile(lat, 0.99)) / 1e3
	}
	return r
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(cases []caseDef, clients []client, results []runResult) []caseSummary {
	var out []caseSummary
	for _, c := range cases {
		cs := caseSummary{Case: c, Clients: map[string]*clientSummary{}, Target: c.Target()}
		for _, cl := range clients {
			var thr, cpu, allocs, bytes, broker, p50, p99 []float64
			s := &clientSummary{}
			for _, r := range results {
				if r.Case != c.ID || r.Client != cl.Name() {
					continue
				}
				if r.Error != "" {
					s.Errors++
					continue
				}
				s.Rounds++
				thr = append(thr, r.MsgsPerSec)
				cpu = append(cpu, r.CPUMicros)
				allocs = append(allocs, r.AllocsPerMsg)
				bytes = append(bytes, r.BytesPerMsg)
				broker = append(broker, r.BrokerCPUPct)
				p50 = append(p50, r.LatencyP50us)
				p99 = append(p99, r.LatencyP99us)
			}
			s.MsgsPerSec, s.CPUMicros, s.AllocsPerMsg, s.BytesPerMsg = median(thr), median(cpu), median(allocs), median(bytes)
			s.BrokerCPUPct, s.LatencyP50us, s.LatencyP99us = median(broker), median(p50), median(p99)
			if len(thr) > 0 {
				s.MinMsgsPerS, s.MaxMsgsPerS = slices.Min(thr), slices.Max(thr)
			}
			if c.Kind == kindIdle {
				s.Idle = summarizeIdle(results, c.ID, cl.Name())
			}
			cs.Clients[cl.Name()] = s
		}
		w, a := cs.Clients[clientWarren], cs.Clients[clientAMQP091]
		if w == nil || a == nil || w.Rounds == 0 || a.Rounds == 0 || (c.Kind == kindIdle && (w.Idle == nil || a.Idle == nil)) {
			cs.Verdict = "n/a"
		} else if c.Kind == kindIdle {
			cs.IdleBytesRatio = ratio(w.Idle.BytesPerConn, a.Idle.BytesPerConn)
			cs.Verdict = verdict(cs)
		} else {
			cs.ThroughputRatio = ratio(w.MsgsPerSec, a.MsgsPerSec)
			cs.CPURatio = ratio(w.CPUMicros, a.CPUMicros)
			cs.AllocRatio = ratio(w.AllocsPerMsg, a.AllocsPerMsg)
			cs.Verdict = verdict(cs)
		}
		out = append(out, cs)
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		if a == 0 {
			return 1
		}
		return math.MaxFloat64 // JSON cannot carry +Inf
	}
	return a / b
}

func verdict(cs caseSummary) string {
	var missed []string
	t := cs.Target
	if t.MinThroughput > 0 && cs.ThroughputRatio < t.MinThroughput {
		missed = append(missed, fmt.Sprintf("msgs/s %.2f× < %g×", cs.ThroughputRatio, t.MinThroughput))
	}
	if t.MaxCPU > 0 && cs.CPURatio > t.MaxCPU {
		missed = append(missed, fmt.Sprintf("CPU %.2f× > %g×", cs.CPURatio, t.MaxCPU))
	}
	if t.MaxAllocs > 0 && cs.AllocRatio > t.MaxAllocs {
		missed = append(missed, fmt.Sprintf("allocs %.2f× > %g×", cs.AllocRatio, t.MaxAllocs))
	}
	missed = append(missed, idleMissed(cs)...)
	if len(missed) == 0 {
		return "met"
	}
	return "missed: " + strings.Join(missed, ", ")
}

func (t target) String() string {
	var parts []string
	if t.MinThroughput > 0 {
		parts = append(parts, fmt.Sprintf("msgs/s ≥%g×", t.MinThroughput))
	}
	if t.MaxCPU > 0 {
		parts = append(parts, fmt.Sprintf("CPU ≤%g×", t.MaxCPU))
	}
	if t.MaxAllocs > 0 {
		parts = append(parts, fmt.Sprintf("allocs ≤%g×", t.MaxAllocs))
	}
	parts = append(parts, idleTargetParts(t)...)
	return strings.Join(parts, ", ")
}

// writeTable prints the markdown table (medians over the rounds).
func writeTable(w io.Writer, rep report) {
	m := rep.Machine
	fmt.Fprintf(w, "CPU: %s (%d CPUs, GOMAXPROCS %d); %s; amqp091-go %s; rounds %d%s\n", m.CPU, m.CPUs, m.GOMAXPROCS, m.GoVersion, m.AMQP091, m.Rounds,
		map[bool]string{true: " (-quick)", false: ""}[m.Quick])
	fmt.Fprintf(w, "loadavg before: %s; after: %s; RabbitMQ: %s\n\n", m.LoadBefore, m.LoadAfter, m.RabbitMQ)
	// After the main table (or instead of it when only the idle-footprint
	// case ran): that case's own table (idle.go), then skips and errors.
	defer writeErrors(w, rep)
	defer writeIdleTable(w, rep)
	if !slices.ContainsFunc(rep.Summary, func(cs caseSummary) bool { return cs.Case.Kind != kindIdle }) {
		return
	}
	fmt.Fprintln(w, "| case | msgs | msgs/s warren | msgs/s amqp091 | msgs/s W/A | CPU µs/msg warren | CPU µs/msg amqp091 | CPU W/A | allocs/msg warren | allocs/msg amqp091 | allocs W/A | B/msg warren | B/msg amqp091 | broker CPU % of client (W / A) | target | verdict |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	var latency []string
	for _, cs := range rep.Summary {
		if cs.Case.Kind == kindIdle {
			continue
		}
		wv, av := cs.Clients[clientWarren], cs.Clients[clientAMQP091]
		cell := func(s *clientSummary, f func(*clientSummary) float64, prec int) string {
			if s == nil || s.Rounds == 0 {
				if s != nil && s.Errors > 0 {
					return "error"
				}
				return "—"
			}
			return fmt.Sprintf("%.*f", prec, f(s))
		}
		rat := func(x float64) string {
			if cs.Verdict == "n/a" {
				return "—"
			}
			return fmt.Sprintf("%.2f", x)
		}
		broker := "—"
		if cs.Case.Broker == brokerScripted {
			broker = cell(wv, func(s *clientSummary) float64 { return s.BrokerCPUPct }, 0) + " / " + cell(av, func(s *clientSummary) float64 { return s.BrokerCPUPct }, 0)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			cs.Case.ID, cs.Case.N,
			cell(wv, func(s *clientSummary) float64 { return s.MsgsPerSec }, 0), cell(av, func(s *clientSummary) float64 { return s.MsgsPerSec }, 0), rat(cs.ThroughputRatio),
			cell(wv, func(s *clientSummary) float64 { return s.CPUMicros }, 2), cell(av, func(s *clientSummary) float64 { return s.CPUMicros }, 2), rat(cs.CPURatio),
			cell(wv, func(s *clientSummary) float64 { return s.AllocsPerMsg }, 2), cell(av, func(s *clientSummary) float64 { return s.AllocsPerMsg }, 2), rat(cs.AllocRatio),
			cell(wv, func(s *clientSummary) float64 { return s.BytesPerMsg }, 0), cell(av, func(s *clientSummary) float64 { return s.BytesPerMsg }, 0),
			broker, cs.Case.Target(), cs.Verdict)
		if cs.Case.Kind == kindLatency {
			for _, name := range []string{clientWarren, clientAMQP091} {
				if s := cs.Clients[name]; s != nil && s.Rounds > 0 {
					latency = append(latency, fmt.Sprintf("%s p50 %.0f µs, p99 %.0f µs", name, s.LatencyP50us, s.LatencyP99us))
				}
			}
		}
	}
	fmt.Fprintln(w)
	if len(latency) > 0 {
		fmt.Fprintf(w, "Publish-to-confirm latency (medians over rounds): %s.\n", strings.Join(latency, "; "))
	}
	for _, cs := range rep.Summary {
		for _, name := range []string{clientWarren, clientAMQP091} {
			if s := cs.Clients[name]; s != nil && s.Rounds > 1 && cs.Case.Kind != kindIdle {
				fmt.Fprintf(w, "- %s %s: msgs/s range %.0f–%.0f over %d rounds\n", cs.Case.ID, name, s.MinMsgsPerS, s.MaxMsgsPerS, s.Rounds)
			}
		}
	}
}

// writeErrors ends the table with the skipped cases and failed runs.
func writeErrors(w io.Writer, rep report) {
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "Skipped (RabbitMQ %s): %s\n", rep.Machine.RabbitMQ, strings.Join(rep.Skipped, ", "))
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "ERROR round %d %s %s: %s\n", r.Round, r.Case, r.Client, r.Error)
		}
	}
}

func machine(quick bool, rounds int) machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0), LoadBefore: loadavg(), Started: time.Now().UTC().Format(time.RFC3339), Quick: quick, Rounds: rounds}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/rabbitmq/amqp091-go" {
				m.AMQP091 = d.Version
			}
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// probe checks that something listens at the broker's address.
func probe(amqpURL string) error {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "?"
	}
	return u.Redacted()
}

// startChild re-executes this binary (or test binary) as the scripted
// broker.
func startChild() (*childProcess, io.Reader, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	cp := &childProcess{pid: cmd.Process.Pid, stdin: stdin, wait: cmd.Wait, kill: func() error {
		if cmd.Process == nil {
			return errors.New("not started")
		}
		return cmd.Process.Kill()
	}}
	return cp, stdout, nil
}
