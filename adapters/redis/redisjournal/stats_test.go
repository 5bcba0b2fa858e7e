package redisjournal_test

import (
	"context"
	"errors"
	"testing"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
)

// TestRedisStatsAndPing: the journal's Meter counts a known sequence of
// operations (Open loads the scripts in one pipeline, each mutation goes
// in a pipeline of its own when it is alone, each read is one command); a
// refusal is an ordinary reply, not an error; Ping measures a round trip
// and, once the server is gone, reports it unavailable, as the Meter
// does.
func TestRedisStatsAndPing(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	m := &redis.Meter{}
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: s.Addr}
	o.Meter = m
	j, err := redisjournal.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Addr() != s.Addr {
		t.Fatalf("Addr %q, want %q", j.Addr(), s.Addr)
	}
	ctx := t.Context()
	type counts struct{ roundTrips, pipelines, commands, noScript, errorReplies, connErrors uint64 }
	var prev redis.Stats
	step := func(name string, want counts) {
		t.Helper()
		st := j.RedisStats()
		got := counts{st.RoundTrips - prev.RoundTrips, st.Pipelines - prev.Pipelines, st.Commands - prev.Commands,
			st.NoScript - prev.NoScript, st.ErrorReplies - prev.ErrorReplies, st.ConnErrors - prev.ConnErrors}
		if want.commands == 0 { // Open's: as many as there are scripts
			want.commands = got.commands
		}
		if got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
		prev = st
	}
	step("Open", counts{roundTrips: 1, pipelines: 1})
	scripts := prev.Commands // Open loaded every script in one pipeline

	mustAppendAt(t, j, "a", 0)
	step("Append", counts{roundTrips: 1, pipelines: 1, commands: 1})
	if _, err := j.Append(ctx, "a", 1, 0, crashEntries("a", 1, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("Append at a stale seq: %v", err)
	}
	step("a refused Append", counts{roundTrips: 1, pipelines: 1, commands: 1})
	if _, err := j.Tail(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Read(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := j.LoadSnapshot(ctx, "a"); err != nil || ok {
		t.Fatalf("LoadSnapshot: %v %v", ok, err)
	}
	step("Tail, Read, LoadSnapshot (none)", counts{roundTrips: 3, commands: 3})
	d, err := j.Ping(ctx)
	if err != nil || d <= 0 {
		t.Fatalf("Ping: %v, %v", d, err)
	}
	step("Ping", counts{roundTrips: 1, commands: 1})
	if st := m.Snapshot(); st.Answered != st.RoundTrips || st.Last <= 0 || st.Last > d {
		t.Errorf("latency after Ping (%v): %+v", d, st)
	}

	s.Kill()
	if _, err := j.Ping(ctx); !errors.Is(err, redisjournal.ErrUnavailable) || !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Ping of a killed server: %v; want ErrUnavailable", err)
	}
	step("Ping of a killed server", counts{roundTrips: 1, commands: 1, connErrors: 1})
	if _, err := j.Append(ctx, "a", 1, 1, crashEntries("a", 1, 1)); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Append with the server killed: %v; want ErrUnavailable", err)
	}
	step("Append with the server killed", counts{roundTrips: 1, pipelines: 1, commands: 1, connErrors: 1})

	// The server comes back with its data and its script cache empty:
	// the append is answered NOSCRIPT, the scripts are loaded again (one
	// pipeline) and it is sent again.
	s.Restart()
	mustAppendAt(t, j, "a", 1)
	step("Append after a restart", counts{roundTrips: 3, pipelines: 3, commands: 1 + scripts + 1, noScript: 1})

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := j.Ping(cancelled); !errors.Is(err, context.Canceled) || errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Ping with a context already done: %v; want its error alone", err)
	}
	j.Close()
	if _, err := j.Ping(ctx); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("Ping after Close: %v; want ErrClosed", err)
	}
}
