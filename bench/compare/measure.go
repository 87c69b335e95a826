package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// meter measures one client's measured region: wall time, this process's
// CPU (getrusage RUSAGE_SELF: every thread, GC included; the broker is
// another process), allocations (runtime.MemStats deltas) and, for the
// scripted broker, the child's CPU from /proc/<pid>/stat.
type meter struct {
	childPID   int    // scripted broker, 0 for none
	profileDir string // write pprof files per region when set
	label      string // file name stem for profiles

	started, stopped bool
	t0               time.Time
	ru0              syscall.Rusage
	ms0              runtime.MemStats
	child0           time.Duration
	cpuFile          *os.File

	wall     time.Duration
	cpu      time.Duration
	mallocs  uint64
	bytes    uint64
	childCPU time.Duration
	err      error
}

func (m *meter) Start() {
	if m.started {
		return
	}
	m.started = true
	runtime.GC()
	if m.profileDir != "" {
		m.writeHeap("allocs-before")
		f, err := os.Create(filepath.Join(m.profileDir, m.label+".cpu.pprof"))
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				m.cpuFile = f
			}
		}
		if err != nil {
			m.err = err
		}
	}
	m.child0 = procCPU(m.childPID)
	runtime.ReadMemStats(&m.ms0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru0)
	m.t0 = time.Now()
}

func (m *meter) Stop() {
	if !m.started || m.stopped {
		return
	}
	m.stopped = true
	m.wall = time.Since(m.t0)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.childCPU = procCPU(m.childPID) - m.child0
	m.cpu = rusageCPU(&ru) - rusageCPU(&m.ru0)
	m.mallocs = ms.Mallocs - m.ms0.Mallocs
	m.bytes = ms.TotalAlloc - m.ms0.TotalAlloc
	if m.cpuFile != nil {
		pprof.StopCPUProfile()
		m.cpuFile.Close()
		m.writeHeap("allocs-after")
	}
}

func (m *meter) writeHeap(suffix string) {
	f, err := os.Create(filepath.Join(m.profileDir, m.label+"."+suffix+".pprof"))
	if err != nil {
		m.err = err
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		m.err = err
	}
}

func rusageCPU(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on Linux (sysconf(_SC_CLK_TCK)) on every architecture Go
// supports.
const clockTick = 10 * time.Millisecond

// procCPU returns utime+stime of process pid from /proc/<pid>/stat, or 0.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'. utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * clockTick
}
