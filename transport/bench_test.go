package transport_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/transport"
)

// Benchmarks: go test -run '^$' -bench . -benchtime 2s ./transport
// Server and client share the process but talk over real TCP on loopback.

func runCallers(b *testing.B, callers int, call func() error) {
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

func BenchmarkEcho(b *testing.B) {
	addr, _ := serve(b, newEcho(), nil)
	payload := []byte(`{"delta":1}`)
	for _, path := range []string{"unary", "stream-batched"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", path, callers), func(b *testing.B) {
				p := newPool(b)
				call := p.InvokeUnary
				if path == "stream-batched" {
					call = p.Invoke
				}
				c := transport.Call{ActorType: "t", ActorID: "1", Method: "echo", Payload: payload}
				runCallers(b, callers, func() error {
					_, err := call(context.Background(), addr, c)
					return err
				})
			})
		}
	}
}
