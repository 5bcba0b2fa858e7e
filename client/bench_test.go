package client_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/config"
	"github.com/loom-mesh/loom/node/nodetest"
)

// BenchmarkCluster measures calls through the client against a three-node
// cluster in this process (Raft coordinator and journal, loopback TCP):
// counter.get (a remote call that changes no state) and counter.add (one
// durable State.Set through Raft), with 1 and 64 callers over 10,000
// actors activated beforehand (each given a value by one add). It reports
// calls/s, p50/p99 latency and the mean number of commands per Raft entry.
// cmd/loom-bench measures the same against separate processes.
//
//	go test -run '^$' -bench Cluster -benchtime 3s ./client
func BenchmarkCluster(b *testing.B) {
	r := newRig(b, nil)
	for _, name := range []string{"get", "add"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) { r.run(b, name, callers) })
		}
	}
}

// BenchmarkClusterTracing is BenchmarkCluster's 64-caller scenarios on two
// clusters in this process, one with tracing.enabled (in-memory trace
// store, no exporter) and one without. The two are measured alternately,
// in tracingSlices pairs of slices of b.N/tracingSlices calls each (which
// side goes first alternates from pair to pair), so that the load other
// processes put on the machine weighs on both sides alike. It reports each
// side's calls/s and process CPU per call, and "on/off": traced
// throughput over untraced, the median of the pairs' ratios (the issue's
// target is at least 0.85).
//
//	go test -run '^$' -bench 'ClusterTracing/get' -benchtime 3s -count 5 ./client
func BenchmarkClusterTracing(b *testing.B) {
	off := newRig(b, nil)
	on := newRig(b, func(c *config.Config) { c.Tracing.Enabled = true })
	for _, name := range []string{"get", "add"} {
		b.Run(name+"/callers=64", func(b *testing.B) {
			var sides [2]sample // off, on
			ratios := make([]float64, tracingSlices)
			per := max(1, b.N/tracingSlices)
			for i := range ratios {
				var pair [2]sample
				first := i % 2
				for _, side := range []int{first, 1 - first} {
					r := off
					if side == 1 {
						r = on
					}
					s, err := r.measure(name, 64, per, int64(i*per))
					if err != nil {
						b.Fatal(err)
					}
					pair[side] = s
					sides[side].add(s)
				}
				ratios[i] = pair[1].rate() / pair[0].rate()
			}
			slices.Sort(ratios)
			b.ReportMetric(sides[0].rate(), "off-calls/s")
			b.ReportMetric(sides[1].rate(), "on-calls/s")
			b.ReportMetric(ratios[len(ratios)/2], "on/off")
			b.ReportMetric(sides[0].cpuPerCall(), "off-cpu-µs/call")
			b.ReportMetric(sides[1].cpuPerCall(), "on-cpu-µs/call")
		})
	}
}

// tracingSlices is how many pairs of slices BenchmarkClusterTracing
// measures.
const tracingSlices = 20

// sample is what measure saw of a run of calls.
type sample struct {
	calls   int
	elapsed time.Duration
	cpu     time.Duration
	lat     []time.Duration
}

func (s *sample) add(o sample) {
	s.calls += o.calls
	s.elapsed += o.elapsed
	s.cpu += o.cpu
	s.lat = append(s.lat, o.lat...)
}

func (s *sample) rate() float64 { return float64(s.calls) / s.elapsed.Seconds() }

func (s *sample) cpuPerCall() float64 { return float64(s.cpu.Microseconds()) / float64(s.calls) }

// pct is the p-th quantile of the latencies, in ms.
func (s *sample) pct(p float64) float64 {
	slices.Sort(s.lat)
	return float64(s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))].Microseconds()) / 1000
}

const benchActors = 10000

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rig is a 3-node cluster, a client, and 10,000 activated counters, each
// holding a value.
type rig struct {
	c  *nodetest.Cluster
	cl *client.Client
}

func benchID(g int, i int64) string { return fmt.Sprintf("b%d", (int64(g)*7919+i)%benchActors) }

func newRig(b *testing.B, configure func(*config.Config)) *rig {
	c := nodetest.StartConfigured(b, 3, configure)
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		addrs[i] = nd.GRPCAddr()
	}
	cl, err := client.Dial(dctx, addrs, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close() })
	nodetest.WaitFor(b, 10*time.Second, "the client to learn 3 members", func() bool { return len(cl.Members()) == 3 })

	// Activate every actor once, 64 at a time, with an add: a counter in
	// use holds a value, which each get then decodes.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < benchActors; i = next.Add(1) - 1 {
				if _, err := builtin.CounterAdd.Call(ctx, cl, benchID(0, i), builtin.CounterDelta{Delta: 1}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return &rig{c: c, cl: cl}
}

// entries counts the Raft entries the nodes committed as leader and the
// commands in them (group commit).
func (r *rig) entries() (n, cmds uint64) {
	for _, nd := range r.c.Nodes {
		st := nd.RaftStats()
		e, _ := strconv.ParseUint(st["batches"], 10, 64)
		k, _ := strconv.ParseUint(st["batch_commands"], 10, 64)
		n, cmds = n+e, cmds+k
	}
	return n, cmds
}

func (r *rig) run(b *testing.B, name string, callers int) {
	e0, c0 := r.entries()
	b.ResetTimer()
	s, err := r.measure(name, callers, b.N, 0)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(s.rate(), "calls/s")
	b.ReportMetric(s.pct(0.50), "p50-ms")
	b.ReportMetric(s.pct(0.99), "p99-ms")
	// CPU time of the whole process (client and the three nodes) per call:
	// steadier than calls/s on a shared machine.
	b.ReportMetric(s.cpuPerCall(), "cpu-µs/call")
	if e1, c1 := r.entries(); e1 > e0 {
		b.ReportMetric(float64(c1-c0)/float64(e1-e0), "cmds/entry")
	}
}

// measure makes n calls of the scenario name from callers goroutines; the
// i-th call (from 1) goes to actor benchID(caller, first+i).
func (r *rig) measure(name string, callers, n int, first int64) (sample, error) {
	ctx := context.Background()
	call := func(g int, i int64) error {
		var err error
		switch name {
		case "get":
			_, err = builtin.CounterGet.Call(ctx, r.cl, benchID(g, i))
		case "add":
			_, err = builtin.CounterAdd.Call(ctx, r.cl, benchID(g, i), builtin.CounterDelta{Delta: 1})
		}
		return err
	}
	lat := make([][]time.Duration, callers)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				t0 := time.Now()
				if err := call(g, first+i); err != nil {
					failed.Store(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	s := sample{calls: n, elapsed: time.Since(start), cpu: cpuTime() - cpu0, lat: slices.Concat(lat...)}
	if err, _ := failed.Load().(error); err != nil {
		return s, err
	}
	return s, nil
}
