package redis_test

import (
	"errors"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/internal/redistest"
)

// meteredClient is a client of s with m hooked in and go-redis's retries
// off (as the adapters have them), closed when t ends.
func meteredClient(t *testing.T, s *redistest.Server, m *redis.Meter) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, PoolSize: 4})
	c.AddHook(m)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// delta is what changed between two Stats, counts only.
type delta struct {
	roundTrips, pipelines, commands, connErrors, errorReplies, scriptErrors, noScript, answered uint64
}

func diff(a, b redis.Stats) delta {
	return delta{
		roundTrips:   b.RoundTrips - a.RoundTrips,
		pipelines:    b.Pipelines - a.Pipelines,
		commands:     b.Commands - a.Commands,
		connErrors:   b.ConnErrors - a.ConnErrors,
		errorReplies: b.ErrorReplies - a.ErrorReplies,
		scriptErrors: b.ScriptErrors - a.ScriptErrors,
		noScript:     b.NoScript - a.NoScript,
		answered:     b.Answered - a.Answered,
	}
}

// TestMeter sends a known sequence of commands to a real server and checks
// each step's counts, then kills the server.
func TestMeter(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	m := &redis.Meter{}
	c := meteredClient(t, s, m)
	ctx := t.Context()

	step := func(name string, want delta, f func()) {
		t.Helper()
		before := m.Snapshot()
		f()
		if got := diff(before, m.Snapshot()); got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
	}
	step("first command", delta{roundTrips: 1, commands: 1, answered: 1}, func() {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if st := m.Snapshot(); st.Dials != 1 || st.DialErrors != 0 || st.Setup == 0 {
		t.Errorf("after the first command: %d dials (%d failed), %d set-up round trips; want 1, 0, some", st.Dials, st.DialErrors, st.Setup)
	}
	step("set and a missing key", delta{roundTrips: 2, commands: 2, answered: 2}, func() {
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, "missing").Err(); !errors.Is(err, goredis.Nil) {
			t.Fatal(err)
		}
	})
	step("pipeline of three", delta{roundTrips: 1, pipelines: 1, commands: 3, answered: 1}, func() {
		pipe := c.Pipeline()
		pipe.Get(ctx, "k")
		pipe.Incr(ctx, "n")
		pipe.Get(ctx, "missing")
		if _, err := pipe.Exec(ctx); !errors.Is(err, goredis.Nil) {
			t.Fatal(err)
		}
	})
	step("pipeline with an error reply", delta{roundTrips: 1, pipelines: 1, commands: 2, errorReplies: 1, answered: 1}, func() {
		pipe := c.Pipeline()
		pipe.Incr(ctx, "k") // not an integer
		pipe.Incr(ctx, "n")
		if _, err := pipe.Exec(ctx); err == nil {
			t.Fatal("INCR of a string succeeded")
		}
	})
	step("unknown command", delta{roundTrips: 1, commands: 1, errorReplies: 1, answered: 1}, func() {
		if err := c.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil {
			t.Fatal("an unknown command succeeded")
		}
	})
	step("script error", delta{roundTrips: 1, commands: 1, errorReplies: 1, scriptErrors: 1, answered: 1}, func() {
		if err := c.Eval(ctx, "return redis.call('INCR', KEYS[1])", []string{"k"}).Err(); err == nil {
			t.Fatal("a failing script succeeded")
		}
	})
	script := goredis.NewScript("return 7")
	step("script not cached: NOSCRIPT, then EVAL", delta{roundTrips: 2, commands: 2, noScript: 1, answered: 2}, func() {
		if v, err := script.Run(ctx, c, nil).Int(); err != nil || v != 7 {
			t.Fatalf("script: %v %v", v, err)
		}
	})
	step("script cached", delta{roundTrips: 1, commands: 1, answered: 1}, func() {
		if err := script.Run(ctx, c, nil).Err(); err != nil {
			t.Fatal(err)
		}
	})

	st := m.Snapshot()
	if st.Answered != st.RoundTrips || st.Recent != int(st.Answered) {
		t.Errorf("answered %d, recent %d, of %d round trips", st.Answered, st.Recent, st.RoundTrips)
	}
	if st.Last <= 0 || st.P50 <= 0 || st.P50 > st.P99 || st.LatencySum < st.P99 {
		t.Errorf("latency: last %v, p50 %v, p99 %v, sum %v", st.Last, st.P50, st.P99, st.LatencySum)
	}
	for i, b := range st.Buckets {
		if b.UpperBound != redis.LatencyBounds[i] || b.Count > st.Answered || i > 0 && b.Count < st.Buckets[i-1].Count {
			t.Errorf("bucket %d: %+v (answered %d, previous %+v)", i, b, st.Answered, st.Buckets[max(i-1, 0)])
		}
	}

	s.Kill()
	step("server killed", delta{roundTrips: 1, commands: 1, connErrors: 1}, func() {
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("PING of a killed server succeeded")
		}
	})
	after := m.Snapshot()
	if after.Last != st.Last {
		t.Errorf("a round trip without an answer moved the latest latency: %v, was %v", after.Last, st.Last)
	}
	if after.DialErrors == 0 {
		t.Errorf("after the kill: %d dials, none failed", after.Dials)
	}
}

// TestMeterConcurrent: one Meter shared by two clients and many
// goroutines counts every command once.
func TestMeterConcurrent(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	m := &redis.Meter{}
	clients := []*goredis.Client{meteredClient(t, s, m), meteredClient(t, s, m)}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := clients[w%len(clients)]
			for range each {
				if err := c.Incr(t.Context(), "n").Err(); err != nil {
					t.Error(err)
					return
				}
				_ = m.Snapshot()
			}
		})
	}
	wg.Wait()
	st := m.Snapshot()
	if st.RoundTrips != workers*each || st.Commands != workers*each || st.Answered != workers*each {
		t.Fatalf("%+v; want %d round trips, commands and answers", st, workers*each)
	}
	if st.Recent != 256 || st.P99 < st.P50 || st.Buckets[len(st.Buckets)-1].Count > st.Answered {
		t.Fatalf("latency summary %+v", st)
	}
}

func TestNilMeter(t *testing.T) {
	var m *redis.Meter
	if st := m.Snapshot(); st.RoundTrips != 0 || st.Buckets != nil {
		t.Fatalf("%+v", st)
	}
}
