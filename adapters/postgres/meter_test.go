package postgres_test

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loom-mesh/loom/adapters/postgres"
	"github.com/loom-mesh/loom/internal/pgtest"
)

// meteredPool is a pool of database db on s counted by m, closed when t
// ends.
func meteredPool(t *testing.T, s *pgtest.Server, db string, m *postgres.Meter) *pgxpool.Pool {
	t.Helper()
	o := options(s, db)
	o.PoolSize = 4
	p, err := postgres.NewPool(o, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// delta is what changed between two Stats, counts only.
type delta struct {
	roundTrips, batches, statements, connErrors, errorReplies, conflicts, prepares, answered uint64
}

func diff(a, b postgres.Stats) delta {
	return delta{
		roundTrips:   b.RoundTrips - a.RoundTrips,
		batches:      b.Batches - a.Batches,
		statements:   b.Statements - a.Statements,
		connErrors:   b.ConnErrors - a.ConnErrors,
		errorReplies: b.ErrorReplies - a.ErrorReplies,
		conflicts:    b.Conflicts - a.Conflicts,
		prepares:     b.Prepares - a.Prepares,
		answered:     b.Answered - a.Answered,
	}
}

// TestMeter sends a known sequence of statements to a real server and
// checks each step's counts, then kills the server.
func TestMeter(t *testing.T) {
	s := pgtest.Start(t, pgtest.Options{})
	db := s.CreateDatabase(t)
	m := &postgres.Meter{}
	p := meteredPool(t, s, db, m)
	ctx := t.Context()
	c, err := p.Acquire(ctx) // one connection, so that prepared statements are found again
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()

	step := func(name string, want delta, f func()) {
		t.Helper()
		before := m.Snapshot()
		f()
		if got := diff(before, m.Snapshot()); got != want {
			t.Errorf("%s: counted %+v, want %+v", name, got, want)
		}
	}
	if st := m.Snapshot(); st.Dials != 1 || st.DialErrors != 0 {
		t.Errorf("after the first acquire: %d dials (%d failed); want 1, 0", st.Dials, st.DialErrors)
	}
	step("statement without arguments", delta{roundTrips: 1, statements: 1, answered: 1}, func() {
		if _, err := c.Exec(ctx, "CREATE TABLE k (n int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
	})
	step("statement with arguments, first time", delta{roundTrips: 1, statements: 1, prepares: 1, answered: 1}, func() {
		if _, err := c.Exec(ctx, "INSERT INTO k VALUES ($1)", 1); err != nil {
			t.Fatal(err)
		}
	})
	step("the same statement again", delta{roundTrips: 1, statements: 1, answered: 1}, func() {
		if _, err := c.Exec(ctx, "INSERT INTO k VALUES ($1)", 2); err != nil {
			t.Fatal(err)
		}
	})
	step("a row not found is no error", delta{roundTrips: 1, statements: 1, prepares: 1, answered: 1}, func() {
		var n int
		if err := c.QueryRow(ctx, "SELECT n FROM k WHERE n = 99").Scan(&n); err != pgx.ErrNoRows {
			t.Fatalf("QueryRow: %v", err)
		}
	})
	step("an error reply", delta{roundTrips: 1, statements: 1, errorReplies: 1, answered: 1}, func() {
		if _, err := c.Exec(ctx, "INSERT INTO k VALUES ($1)", 1); err == nil {
			t.Fatal("a duplicate key was accepted")
		}
	})
	step("a serialization failure", delta{roundTrips: 1, statements: 1, errorReplies: 1, conflicts: 1, answered: 1}, func() {
		if _, err := c.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"); !postgres.IsConflict(err) {
			t.Fatalf("%v; want a serialization failure", err)
		}
	})
	step("batch of three", delta{roundTrips: 1, batches: 1, statements: 3, answered: 1}, func() {
		b := &pgx.Batch{}
		for _, q := range []string{"SELECT 1", "SELECT 2", "SELECT 3"} {
			b.Queue(q)
		}
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
	})
	step("batch failing in its first statement", delta{roundTrips: 1, batches: 1, statements: 2, errorReplies: 1, answered: 1}, func() {
		b := &pgx.Batch{}
		b.Queue("SELECT 1/0")
		b.Queue("SELECT 1")
		if err := c.SendBatch(ctx, b).Close(); err == nil {
			t.Fatal("a failing batch succeeded")
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
		if b.UpperBound != postgres.LatencyBounds[i] || b.Count > st.Answered || i > 0 && b.Count < st.Buckets[i-1].Count {
			t.Errorf("bucket %d: %+v (answered %d)", i, b, st.Answered)
		}
	}

	s.Kill()
	step("server killed", delta{roundTrips: 1, statements: 1, connErrors: 1}, func() {
		if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatal("a killed server answered")
		}
	})
	if after := m.Snapshot(); after.Last != st.Last {
		t.Errorf("a round trip without an answer moved the latest latency: %v, was %v", after.Last, st.Last)
	}
	c.Release()
	if _, err := p.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a killed server answered")
	}
	if st := m.Snapshot(); st.DialErrors == 0 {
		t.Errorf("after the kill: %d dials, none failed", st.Dials)
	}
}

// TestMeterConcurrent: one Meter shared by two pools and many goroutines
// counts every statement once.
func TestMeterConcurrent(t *testing.T) {
	s := pgtest.Shared(t)
	db := s.CreateDatabase(t)
	m := &postgres.Meter{}
	pools := []*pgxpool.Pool{meteredPool(t, s, db, m), meteredPool(t, s, db, m)}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := pools[w%len(pools)]
			for range each {
				if _, err := p.Exec(t.Context(), "SELECT 1"); err != nil {
					t.Error(err)
					return
				}
				_ = m.Snapshot()
			}
		})
	}
	wg.Wait()
	st := m.Snapshot()
	if st.RoundTrips != workers*each || st.Statements != workers*each || st.Answered != workers*each {
		t.Fatalf("%+v; want %d round trips, statements and answers", st, workers*each)
	}
	if st.Recent != 256 || st.P99 < st.P50 || st.Buckets[len(st.Buckets)-1].Count > st.Answered {
		t.Fatalf("latency summary %+v", st)
	}
}

func TestNilMeter(t *testing.T) {
	var m *postgres.Meter
	if st := m.Snapshot(); st.RoundTrips != 0 || st.Buckets != nil {
		t.Fatalf("%+v", st)
	}
}
