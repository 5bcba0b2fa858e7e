package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuMeter reads the CPU time spent so far by everything a measurement
// runs on: this process (the callers, and the baselines that run in it),
// the child processes it started (the gRPC echo server), and the nodes at
// --http-addrs (their process_cpu_seconds_total). The difference over a
// measurement, divided by its calls, is the CPU each call cost, summed
// over every process. It reads the bytes the nodes wrote to storage too
// (loom_disk_written_bytes_total), when every node reports them.
type cpuMeter struct {
	nh    *nodeHTTP
	nodes []string
	pids  []int
}

// usage is what a cpuMeter read: CPU seconds, and the nodes' bytes
// written (-1: not reported by every node).
type usage struct{ cpu, disk float64 }

func (m *cpuMeter) read() (usage, error) {
	u := usage{disk: -1}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return u, err
	}
	total := seconds(ru.Utime) + seconds(ru.Stime)
	for _, pid := range m.pids {
		s, err := procCPU(pid)
		if err != nil {
			return u, err
		}
		total += s
	}
	disk, diskOK := 0.0, len(m.nodes) > 0
	for _, a := range m.nodes {
		mm, err := m.nh.metrics(a, 2*time.Second)
		if err != nil {
			return u, err
		}
		v, ok := mm["process_cpu_seconds_total"]
		if !ok {
			return u, fmt.Errorf("%s: /metrics has no process_cpu_seconds_total", a)
		}
		total += v
		d, ok := mm["loom_disk_written_bytes_total"]
		disk, diskOK = disk+d, diskOK && ok
	}
	u.cpu = total
	if diskOK {
		u.disk = disk
	}
	return u, nil
}

func seconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// procCPU is process pid's user and system CPU time: fields 14 and 15 of
// /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux).
func procCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start past the last ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	var ticks float64
	for _, v := range f[11:13] { // utime, stime: fields 14 and 15 overall
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += float64(n)
	}
	return ticks / 100, nil
}
