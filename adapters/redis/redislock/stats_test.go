package redislock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/lock"
)

// TestRedisStatsAndPing: the coordinator's Meter counts a known sequence
// of operations on a fresh server (whose script cache is empty, so each
// script's first run is answered NOSCRIPT and sent again); a refusal is an
// ordinary reply, not an error; Ping measures a round trip and, once the
// server is gone, reports it unavailable, as the Meter does.
func TestRedisStatsAndPing(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	m := &redis.Meter{}
	c, err := redislock.New(redislock.Options{Redis: redis.Options{Addr: srv.Addr, KeyPrefix: uniquePrefix()}, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Addr() != srv.Addr {
		t.Fatalf("Addr %q, want %q", c.Addr(), srv.Addr)
	}
	ctx := t.Context()
	type counts struct{ roundTrips, commands, noScript, errorReplies, connErrors uint64 }
	var prev redis.Stats
	step := func(name string, want counts) {
		t.Helper()
		st := c.RedisStats()
		got := counts{st.RoundTrips - prev.RoundTrips, st.Commands - prev.Commands, st.NoScript - prev.NoScript,
			st.ErrorReplies - prev.ErrorReplies, st.ConnErrors - prev.ConnErrors}
		if got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
		prev = st
	}
	step("nothing sent", counts{})

	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	step("first CreateSession", counts{roundTrips: 2, commands: 2, noScript: 1})
	if _, err := c.Acquire(ctx, a, "k"); err != nil {
		t.Fatal(err)
	}
	step("first Acquire", counts{roundTrips: 2, commands: 2, noScript: 1})
	if _, err := c.Acquire(ctx, a, "k"); err != nil {
		t.Fatal(err)
	}
	step("Acquire again", counts{roundTrips: 1, commands: 1})
	b, err := c.CreateSession(ctx, "node-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, b, "k"); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("Acquire of a held lock: %v", err)
	}
	step("a refusal", counts{roundTrips: 2, commands: 2})

	d, err := c.Ping(ctx)
	if err != nil || d <= 0 {
		t.Fatalf("Ping: %v, %v", d, err)
	}
	step("Ping", counts{roundTrips: 1, commands: 1})
	if st := c.RedisStats(); st.Answered != st.RoundTrips || st.Last <= 0 || st.Last > d || st.P99 < st.P50 {
		t.Errorf("latency after Ping (%v): %+v", d, st)
	}
	if st := m.Snapshot(); st.RoundTrips != prev.RoundTrips {
		t.Errorf("the shared Meter counted %d round trips, the coordinator %d", st.RoundTrips, prev.RoundTrips)
	}

	srv.Kill()
	if _, err := c.Ping(ctx); !errors.Is(err, redislock.ErrUnavailable) || !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Ping of a killed server: %v; want ErrUnavailable", err)
	}
	step("Ping of a killed server", counts{roundTrips: 1, commands: 1, connErrors: 1})
	if err := c.Renew(ctx, a); !errors.Is(err, lock.ErrUnavailable) && !errors.Is(err, lock.ErrUnknownOutcome) {
		t.Fatalf("Renew with the server killed: %v", err)
	}
	step("Renew with the server killed", counts{roundTrips: 1, commands: 1, connErrors: 1})
	if st := c.RedisStats(); st.DialErrors == 0 {
		t.Errorf("no failed dial counted: %+v", st)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Ping(cancelled); !errors.Is(err, context.Canceled) || errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Ping with a context already done: %v; want its error alone", err)
	}
	c.Close()
	if _, err := c.Ping(ctx); !errors.Is(err, lock.ErrClosed) {
		t.Fatalf("Ping after Close: %v; want ErrClosed", err)
	}
}
