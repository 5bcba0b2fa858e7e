package redisjournal_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
)

// BenchmarkAppend measures appends of one entry (a 100-byte payload) to
// 10,000 actors from 1 and 64 goroutines against one redis-server with
// appendfsync always, beside raw go-redis XADDs of the same record with the
// same concurrency (one XADD per operation, no script, no pipelining): the
// server's own ceiling for fsynced single-command writes on this machine.
// Each goroutine appends to its own share of the actors in turn. Reports
// ops/s, the p50 and p99 latency of one call, and the server's CPU time
// per operation (redis-µs/op, from INFO cpu).
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 20000x ./adapters/redis/redisjournal/
func BenchmarkAppend(b *testing.B) {
	const actors = 10000
	s := redistest.Start(b, redistest.Options{})
	payload := make([]byte, 100)
	run := 0
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d/journal", callers), func(b *testing.B) {
			run++
			o := redisjournal.DefaultOptions()
			o.Redis = redis.Options{Addr: s.Addr, KeyPrefix: fmt.Sprintf("bench%d:", run)}
			j, err := redisjournal.Open(b.Context(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			tails := make([]uint64, actors) // each goroutine owns the actors ≡ g mod callers
			cpu := serverCPU(b, s)
			measure(b, callers, actors, func(actor int) error {
				key := fmt.Sprintf("actor-%d", actor)
				tail, err := j.Append(b.Context(), key, 1, tails[actor], []journal.Entry{{Kind: journal.KindInvocation, Method: "m", Payload: payload}})
				tails[actor] = tail
				return err
			})
			cpu.report()
		})
		b.Run(fmt.Sprintf("callers=%d/xadd", callers), func(b *testing.B) {
			run++
			c := goredis.NewClient(&goredis.Options{Addr: s.Addr, PoolSize: callers})
			defer c.Close()
			rec := journal.MarshalEntry(journal.Entry{Seq: 1, Kind: journal.KindInvocation, Actor: "actor-0", Method: "m", Payload: payload, Token: 1})
			prefix := fmt.Sprintf("bench%d:", run)
			cpu := serverCPU(b, s)
			measure(b, callers, actors, func(actor int) error {
				return c.XAdd(b.Context(), &goredis.XAddArgs{Stream: fmt.Sprintf("%sactor-%d", prefix, actor), ID: "*", Values: []any{"e", rec}}).Err()
			})
			cpu.report()
		})
	}
}

// cpuMeter reads a redis-server's CPU time (user and system, INFO cpu)
// when made and again in report, which reports the difference per b.N.
type cpuMeter struct {
	b     *testing.B
	c     *goredis.Client
	start float64
}

func serverCPU(b *testing.B, s *redistest.Server) cpuMeter {
	m := cpuMeter{b: b, c: s.Client()}
	m.start = m.read()
	return m
}

func (m cpuMeter) read() float64 {
	info, err := m.c.Info(m.b.Context(), "cpu").Result()
	if err != nil {
		m.b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				m.b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += f
		}
	}
	return total
}

func (m cpuMeter) report() {
	m.b.ReportMetric((m.read()-m.start)*1e6/float64(m.b.N), "redis-µs/op")
}

// measure runs b.N calls of op from callers goroutines, goroutine g calling
// it for actors g, g+callers, g+2*callers, ... in turn, and reports ops/s
// and latency percentiles.
func measure(b *testing.B, callers, actors int, op func(actor int) error) {
	measureUnit(b, callers, actors, "ops/s", op)
}

// measureUnit is measure reporting the rate as unit.
func measureUnit(b *testing.B, callers, actors int, unit string, op func(actor int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range callers {
		wg.Go(func() {
			mine := make([]time.Duration, 0, b.N/callers+1)
			share := (actors - g + callers - 1) / callers // actors g, g+callers, ... below actors
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				actor := g + i%share*callers
				t0 := time.Now()
				if err := op(actor); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			lat[g] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit)
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
