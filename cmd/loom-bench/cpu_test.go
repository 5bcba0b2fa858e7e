package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/client"
)

// The meter sums this process's CPU and the nodes' process_cpu_seconds_total;
// /proc/<pid>/stat agrees with getrusage on this process. It sums the
// nodes' bytes written when every node reports them.
func TestCPUMeter(t *testing.T) {
	metrics := func(text string) string {
		node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(text))
		}))
		t.Cleanup(node.Close)
		return strings.TrimPrefix(node.URL, "http://")
	}
	addr := metrics("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2.5\n" +
		"# TYPE loom_disk_written_bytes_total counter\nloom_disk_written_bytes_total 4096\n")
	noDisk := metrics("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2.5\n")
	nh, err := newNodeHTTP(client.TLSOptions{}, "")
	if err != nil {
		t.Fatal(err)
	}
	alone := &cpuMeter{nh: nh}
	with := &cpuMeter{nh: nh, nodes: []string{addr, addr}, pids: []int{os.Getpid()}}

	var a usage
	for end := time.Now().Add(30 * time.Second); a.cpu < 0.25; { // spend some CPU
		if a, err = alone.read(); err != nil || time.Now().After(end) {
			t.Fatalf("this process's CPU: %v, %v; want it to reach 0.25 s", a.cpu, err)
		}
	}
	if a.disk != -1 {
		t.Fatalf("no node, yet %v bytes written", a.disk)
	}
	b, err := with.read()
	if err != nil {
		t.Fatal(err)
	}
	// b = this process (read again, a bit later) + /proc's view of it + 2 × 2.5.
	if own := b.cpu - 5 - a.cpu; own < 0.9*a.cpu || own > 1.1*a.cpu+0.05 {
		t.Fatalf("with two nodes and this pid: %v; want %v + ~%v + 5", b.cpu, a.cpu, a.cpu)
	}
	if b.disk != 8192 {
		t.Fatalf("two nodes of 4096 bytes written: %v", b.disk)
	}
	if c, err := (&cpuMeter{nh: nh, nodes: []string{addr, noDisk}}).read(); err != nil || c.disk != -1 {
		t.Fatalf("a node without the disk family: %v bytes, %v; want -1 (not measured)", c.disk, err)
	}
	if _, err := (&cpuMeter{nh: nh, nodes: []string{"127.0.0.1:1"}}).read(); err == nil {
		t.Fatal("an unreachable node read without an error")
	}
}
