package pgjournal_test

import (
	"context"
	"errors"
	"testing"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/adapters/postgres/pgjournal"
	"github.com/loom-mesh/loom/internal/pgtest"
	"github.com/loom-mesh/loom/journal"
)

// TestPostgresStatsAndPing: an append is one batch, one round trip; a
// refusal is an ordinary answer; a read is one statement; Ping measures a
// round trip and, once the server is gone, reports it unavailable.
func TestPostgresStatsAndPing(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t, pgtest.Options{})
	m := &postgres.Meter{}
	j := open(t, s, s.CreateDatabase(t), "loom", func(o *pgjournal.Options) { o.Meter = m })
	if j.Addr() != s.Addr() {
		t.Fatalf("Addr %q, want %q", j.Addr(), s.Addr())
	}
	ctx := t.Context()
	mustAppendAt(t, j, "a", 0) // prepares the statement
	type counts struct{ roundTrips, batches, errorReplies, connErrors uint64 }
	prev := j.PostgresStats()
	step := func(name string, want counts) {
		t.Helper()
		st := j.PostgresStats()
		got := counts{st.RoundTrips - prev.RoundTrips, st.Batches - prev.Batches, st.ErrorReplies - prev.ErrorReplies, st.ConnErrors - prev.ConnErrors}
		if got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
		prev = st
	}
	mustAppendAt(t, j, "a", 1)
	step("Append", counts{roundTrips: 1, batches: 1})
	if _, err := j.Append(ctx, "a", 1, 0, entriesAt("a", 0, 1)); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("Append at a stale seq: %v", err)
	}
	step("a refusal", counts{roundTrips: 1, batches: 1})
	checkLog(t, j, "a", 2)
	step("Read and Tail", counts{roundTrips: 2})
	d, err := j.Ping(ctx)
	if err != nil || d <= 0 {
		t.Fatalf("Ping: %v, %v", d, err)
	}
	step("Ping", counts{roundTrips: 1})
	if st := m.Snapshot(); st.RoundTrips != prev.RoundTrips || st.Answered != st.RoundTrips || st.P99 < st.P50 {
		t.Errorf("the shared Meter: %+v; the journal counted %d round trips", st, prev.RoundTrips)
	}
	s.Kill()
	if _, err := j.Ping(ctx); !errors.Is(err, pgjournal.ErrUnavailable) || !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf("Ping of a killed server: %v; want ErrUnavailable", err)
	}
	step("Ping of a killed server", counts{roundTrips: 1, connErrors: 1})
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
