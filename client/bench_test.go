package client_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/node/nodetest"
)

// BenchmarkCluster measures calls through the client against a three-node
// cluster in this process (Raft coordinator and journal, loopback TCP):
// counter.get (a remote call that changes no state) and counter.add (one
// durable State.Set through Raft), with 1 and 64 callers over 10,000
// actors activated beforehand. It reports calls/s, p50/p99 latency and the
// mean number of commands per Raft entry.
// cmd/loom-bench measures the same against separate processes.
//
//	go test -run '^$' -bench Cluster -benchtime 3s ./client
func BenchmarkCluster(b *testing.B) {
	c := nodetest.Start(b, 3)
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
	defer cl.Close()
	nodetest.WaitFor(b, 10*time.Second, "the client to learn 3 members", func() bool { return len(cl.Members()) == 3 })

	const actors = 10000
	id := func(g int, i int64) string { return fmt.Sprintf("b%d", (int64(g)*7919+i)%actors) }
	// Activate every actor once, 64 at a time.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < actors; i = next.Add(1) - 1 {
				if _, err := builtin.CounterGet.Call(ctx, cl, id(0, i), struct{}{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}

	// entries counts the Raft entries the nodes committed as leader and
	// the commands in them (group commit).
	entries := func() (n, cmds uint64) {
		for _, nd := range c.Nodes {
			st := nd.RaftStats()
			e, _ := strconv.ParseUint(st["batches"], 10, 64)
			k, _ := strconv.ParseUint(st["batch_commands"], 10, 64)
			n, cmds = n+e, cmds+k
		}
		return n, cmds
	}
	calls := map[string]func(g int, i int64) error{
		"get": func(g int, i int64) error {
			_, err := builtin.CounterGet.Call(ctx, cl, id(g, i), struct{}{})
			return err
		},
		"add": func(g int, i int64) error {
			_, err := builtin.CounterAdd.Call(ctx, cl, id(g, i), builtin.CounterDelta{Delta: 1})
			return err
		},
	}
	for _, name := range []string{"get", "add"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) {
				call := calls[name]
				e0, c0 := entries()
				lat := make([][]time.Duration, callers)
				var next atomic.Int64
				var failed atomic.Value
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for g := range callers {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							t0 := time.Now()
							if err := call(g, i); err != nil {
								failed.Store(err)
								return
							}
							lat[g] = append(lat[g], time.Since(t0))
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				all := slices.Concat(lat...)
				slices.Sort(all)
				pct := func(p float64) float64 {
					return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
				b.ReportMetric(pct(0.50), "p50-ms")
				b.ReportMetric(pct(0.99), "p99-ms")
				if e1, c1 := entries(); e1 > e0 {
					b.ReportMetric(float64(c1-c0)/float64(e1-e0), "cmds/entry")
				}
			})
		}
	}
}
