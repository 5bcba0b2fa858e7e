package redislock_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/lock"
)

// The benchmarks run against a real redis-server with appendfsync always
// (each write is fsynced before Redis answers; writes from concurrent
// clients share an fsync), on the production clock. Run them with
//
//	go test -run '^$' -bench . ./adapters/redis/redislock
//
// Each reports ops/s over all goroutines.

// BenchmarkAcquire: each op is a grant of a new key (the session check,
// INCR of the key's token counter, the lock and the session's lock set).
func BenchmarkAcquire(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			c, s := benchCoordinator(b)
			var n atomic.Uint64
			parallel(b, g, func() error {
				_, err := c.Acquire(b.Context(), s, fmt.Sprintf("k%d", n.Add(1)))
				return err
			})
		})
	}
}

// BenchmarkReacquire: each op is an Acquire by the holder of a lock it
// already holds (no write: the token comes back).
func BenchmarkReacquire(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			c, s := benchCoordinator(b)
			if _, err := c.Acquire(b.Context(), s, "k"); err != nil {
				b.Fatal(err)
			}
			parallel(b, g, func() error {
				_, err := c.Acquire(b.Context(), s, "k")
				return err
			})
		})
	}
}

// BenchmarkRenew: each op renews one of 64 sessions (a write and the
// sweep's index lookup).
func BenchmarkRenew(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			c, s := benchCoordinator(b)
			sessions := []lock.SessionID{s}
			for range 63 {
				s, err := c.CreateSession(b.Context(), "bench", time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, s)
			}
			var n atomic.Uint64
			parallel(b, g, func() error {
				return c.Renew(b.Context(), sessions[n.Add(1)%64])
			})
		})
	}
}

func benchCoordinator(b *testing.B) (*redislock.Coordinator, lock.SessionID) {
	srv := redistest.Start(b, redistest.Options{})
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, PoolSize: 64}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	s, err := c.CreateSession(b.Context(), "bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return c, s
}

// parallel runs op b.N times from g goroutines and reports ops/s.
func parallel(b *testing.B, g int, op func() error) {
	b.Helper()
	if g == 1 {
		b.ResetTimer()
		for range b.N {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((g + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
