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
// /proc/<pid>/stat agrees with getrusage on this process.
func TestCPUMeter(t *testing.T) {
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2.5\n"))
	}))
	defer node.Close()
	nh, err := newNodeHTTP(client.TLSOptions{}, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(node.URL, "http://")
	alone := &cpuMeter{nh: nh}
	with := &cpuMeter{nh: nh, nodes: []string{addr, addr}, pids: []int{os.Getpid()}}

	var a float64
	for end := time.Now().Add(30 * time.Second); a < 0.25; { // spend some CPU
		if a, err = alone.read(); err != nil || time.Now().After(end) {
			t.Fatalf("this process's CPU: %v, %v; want it to reach 0.25 s", a, err)
		}
	}
	b, err := with.read()
	if err != nil {
		t.Fatal(err)
	}
	// b = this process (read again, a bit later) + /proc's view of it + 2 × 2.5.
	if own := b - 5 - a; own < 0.9*a || own > 1.1*a+0.05 {
		t.Fatalf("with two nodes and this pid: %v; want %v + ~%v + 5", b, a, a)
	}
	if _, err := (&cpuMeter{nh: nh, nodes: []string{"127.0.0.1:1"}}).read(); err == nil {
		t.Fatal("an unreachable node read without an error")
	}
}
