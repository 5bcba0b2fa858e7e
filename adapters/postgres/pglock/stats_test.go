package pglock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pglock"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/lock"
)

// TestPostgresStatsAndPing: the coordinator's Meter counts its
// operations, one round trip each; a refusal is an ordinary answer, not
// an error; Ping measures a round trip and, once the server is gone,
// reports it unavailable, as the Meter does.
func TestPostgresStatsAndPing(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	m := &postgres.Meter{}
	o := options(s, s.CreateDatabase(t), "loom")
	o.Meter = m
	c, err := pglock.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Addr() != s.Addr() {
		t.Fatalf("Addr %q, want %q", c.Addr(), s.Addr())
	}
	ctx := t.Context()
	type counts struct{ roundTrips, errorReplies, connErrors uint64 }
	prev := c.PostgresStats()
	step := func(name string, want counts) {
		t.Helper()
		st := c.PostgresStats()
		got := counts{st.RoundTrips - prev.RoundTrips, st.ErrorReplies - prev.ErrorReplies, st.ConnErrors - prev.ConnErrors}
		if got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
		prev = st
	}
	a, err := c.CreateSession(ctx, "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	step("CreateSession", counts{roundTrips: 1})
	if _, err := c.Acquire(ctx, a, "k"); err != nil {
		t.Fatal(err)
	}
	step("Acquire", counts{roundTrips: 1})
	b, err := c.CreateSession(ctx, "node-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, b, "k"); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("Acquire of a held lock: %v", err)
	}
	step("a refusal", counts{roundTrips: 2})
	d, err := c.Ping(ctx)
	if err != nil || d <= 0 {
		t.Fatalf("Ping: %v, %v", d, err)
	}
	step("Ping", counts{roundTrips: 1})
	if st := c.PostgresStats(); st.Answered != st.RoundTrips || st.Last <= 0 || st.Last > d || st.P99 < st.P50 {
		t.Errorf("latency after Ping (%v): %+v", d, st)
	}
	if st := m.Snapshot(); st.RoundTrips != prev.RoundTrips {
		t.Errorf("the shared Meter counted %d round trips, the coordinator %d", st.RoundTrips, prev.RoundTrips)
	}

	s.Kill()
	if _, err := c.Ping(ctx); !errors.Is(err, pglock.ErrUnavailable) || !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Ping of a killed server: %v; want ErrUnavailable", err)
	}
	step("Ping of a killed server", counts{roundTrips: 1, connErrors: 1})
	c.DropConnections()
	if err := c.Renew(ctx, a); !errors.Is(err, lock.ErrUnavailable) {
		t.Fatalf("Renew with the server killed (a new connection refused): %v", err)
	}
	if st := c.PostgresStats(); st.DialErrors == 0 {
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
