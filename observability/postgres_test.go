package observability

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPostgresHealthAndMetrics: a server that answers its ping leaves
// locks and messageQueues healthy; one that does not makes both degraded,
// naming the server; the collector reports the pool's counters by role,
// its errors split by kind, and its latency histogram.
func TestPostgresHealthAndMetrics(t *testing.T) {
	stats := PostgresStats{
		RoundTrips: 10, ConnErrors: 1, ErrorReplies: 3, Conflicts: 2, Dials: 4, DialErrors: 1,
		Answered: 9, LatencySum: 9 * time.Millisecond,
		Buckets: []LatencyBucket{{UpperBound: time.Millisecond, Count: 5}, {UpperBound: 5 * time.Millisecond, Count: 9}},
		P50:     time.Millisecond, P99: 3 * time.Millisecond,
	}
	up := PostgresSource{Role: "journal", Addr: "db:5432", Stats: func() PostgresStats { return stats },
		Ping: func() (time.Duration, error) { return 1500 * time.Microsecond, nil }}
	down := up
	down.Role = "locks"
	down.Ping = func() (time.Duration, error) { return time.Second, errors.New("connection refused") }

	h := CheckPostgres(up)
	if h.PingMs != 1.5 || h.Error != "" || h.P99Ms != 3 || h.RoundTrips != 10 || h.Conflicts != 2 || h.DialErrors != 1 {
		t.Fatalf("healthy server: %+v", h)
	}
	locks := &LocksHealth{Session: "s1", Valid: true, LastRenewalAgoMs: 100, RenewIntervalMs: 3000, Postgres: h}
	if locks.Check() != Healthy {
		t.Fatalf("locks with postgres answering: %s (%s)", locks.Status, locks.Reason)
	}
	mq := CheckMessageQueues(nil, nil, 0, time.Now(), time.Minute)
	mq.Postgres = CheckPostgres(down)
	if mq.Check() != Degraded || len(mq.Reasons) != 1 || !strings.Contains(mq.Reasons[0], "postgres at db:5432 does not answer: connection refused") {
		t.Fatalf("messageQueues with postgres down: %s %v", mq.Status, mq.Reasons)
	}
	locks.Postgres = mq.Postgres
	if locks.Check() != Degraded || !strings.Contains(locks.Reason, "postgres at db:5432") || locks.Postgres.PingMs != -1 {
		t.Fatalf("locks with postgres down: %s (%s), %+v", locks.Status, locks.Reason, locks.Postgres)
	}

	m := NewMetrics()
	m.AddPostgres(up)
	m.AddPostgres(down)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"loom_postgres_round_trips_total", "role", "journal", 10},
		{"loom_postgres_round_trips_total", "role", "locks", 10},
		{"loom_postgres_errors_total", "kind", "connection", 1},
		{"loom_postgres_errors_total", "kind", "reply", 1},
		{"loom_postgres_errors_total", "kind", "conflict", 2},
		{"loom_postgres_errors_total", "kind", "dial", 1},
	} {
		if got := testutilCounter(t, m, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "loom_postgres_round_trip_seconds" {
			continue
		}
		for _, met := range mf.GetMetric() {
			if h := met.GetHistogram(); h.GetSampleCount() != 9 || h.GetSampleSum() != 0.009 {
				t.Fatalf("latency histogram: count %d, sum %v", h.GetSampleCount(), h.GetSampleSum())
			}
		}
		return
	}
	t.Fatal("no loom_postgres_round_trip_seconds on /metrics")
}
