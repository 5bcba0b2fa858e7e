package observability

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A PostgreSQL server a component of the node depends on (the PostgreSQL
// coordinator under locks, the PostgreSQL journal and queues under
// messageQueues): how this node reaches it, in /health, and what it sent
// it, on /metrics. The counterpart of redis.go.

// PostgresStats are the counters of one connection pool
// (adapters/postgres.Meter), as the node copies them.
type PostgresStats struct {
	RoundTrips   uint64 // statements sent alone, plus batches
	ConnErrors   uint64 // round trips that got no answer
	ErrorReplies uint64 // statements answered with an error
	Conflicts    uint64 // of ErrorReplies, serialization failures and deadlocks
	Dials        uint64 // connection attempts
	DialErrors   uint64 // of Dials, the failed ones
	Answered     uint64
	LatencySum   time.Duration
	Buckets      []LatencyBucket // cumulative counts
	P50, P99     time.Duration   // of the latest round trips
}

// PostgresSource is one PostgreSQL pool of the node: its role ("locks",
// "journal"), the server's address, its counters and a ping.
type PostgresSource struct {
	Role  string
	Addr  string
	Stats func() PostgresStats
	Ping  func() (time.Duration, error)
}

// PostgresHealth is a component's PostgreSQL server as this node reaches
// it: a ping's round trip (SELECT 1; -1 when it failed, with the error),
// and the latency and errors of the round trips so far.
type PostgresHealth struct {
	Addr         string  `json:"addr"`
	PingMs       float64 `json:"pingMs"`
	Error        string  `json:"error,omitempty"`
	P50Ms        float64 `json:"p50Ms"`
	P99Ms        float64 `json:"p99Ms"`
	RoundTrips   uint64  `json:"roundTrips"`
	ConnErrors   uint64  `json:"connectionErrors"`
	ErrorReplies uint64  `json:"errorReplies"`
	Conflicts    uint64  `json:"conflicts"`
	DialErrors   uint64  `json:"dialErrors"`
}

// CheckPostgres pings src's server and reads its counters.
func CheckPostgres(src PostgresSource) *PostgresHealth {
	st := src.Stats()
	h := &PostgresHealth{Addr: src.Addr, P50Ms: ms(st.P50), P99Ms: ms(st.P99),
		RoundTrips: st.RoundTrips, ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies,
		Conflicts: st.Conflicts, DialErrors: st.DialErrors}
	d, err := src.Ping()
	if err != nil {
		h.PingMs, h.Error = -1, err.Error()
	} else {
		h.PingMs = ms(d)
	}
	return h
}

// reason is why the server makes its component degraded, or "".
func (h *PostgresHealth) reason() string {
	if h == nil || h.Error == "" {
		return ""
	}
	return fmt.Sprintf("postgres at %s does not answer: %s", h.Addr, h.Error)
}

var (
	descPostgresRoundTrips = prometheus.NewDesc("loom_postgres_round_trips_total", "Round trips to PostgreSQL (a statement alone, or a batch), by role (locks, journal).", []string{"role"}, nil)
	descPostgresErrors     = prometheus.NewDesc("loom_postgres_errors_total", "PostgreSQL failures by role and kind: connection (a round trip without an answer), reply (an error reply), conflict (a serialization failure or deadlock reply), dial (a failed connection attempt).", []string{"role", "kind"}, nil)
	descPostgresLatency    = prometheus.NewDesc("loom_postgres_round_trip_seconds", "Latency of answered round trips to PostgreSQL, by role.", []string{"role"}, nil)
)

// postgresCollector reads the pools' counters at scrape time.
type postgresCollector struct {
	mu      sync.Mutex
	sources []PostgresSource
}

func (c *postgresCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPostgresRoundTrips
	ch <- descPostgresErrors
	ch <- descPostgresLatency
}

func (c *postgresCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := slices.Clone(c.sources)
	c.mu.Unlock()
	for _, s := range sources {
		st := s.Stats()
		ch <- prometheus.MustNewConstMetric(descPostgresRoundTrips, prometheus.CounterValue, float64(st.RoundTrips), s.Role)
		ch <- prometheus.MustNewConstMetric(descPostgresErrors, prometheus.CounterValue, float64(st.ConnErrors), s.Role, "connection")
		ch <- prometheus.MustNewConstMetric(descPostgresErrors, prometheus.CounterValue, float64(st.ErrorReplies-st.Conflicts), s.Role, "reply")
		ch <- prometheus.MustNewConstMetric(descPostgresErrors, prometheus.CounterValue, float64(st.Conflicts), s.Role, "conflict")
		ch <- prometheus.MustNewConstMetric(descPostgresErrors, prometheus.CounterValue, float64(st.DialErrors), s.Role, "dial")
		buckets := make(map[float64]uint64, len(st.Buckets))
		for _, b := range st.Buckets {
			buckets[b.UpperBound.Seconds()] = b.Count
		}
		ch <- prometheus.MustNewConstHistogram(descPostgresLatency, st.Answered, st.LatencySum.Seconds(), buckets, s.Role)
	}
}

// AddPostgres adds a PostgreSQL pool's counters to /metrics.
func (m *Metrics) AddPostgres(s PostgresSource) {
	m.postgresOnce.Do(func() { m.reg.MustRegister(&m.postgres) })
	m.postgres.mu.Lock()
	m.postgres.sources = append(m.postgres.sources, s)
	m.postgres.mu.Unlock()
}
