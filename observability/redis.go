package observability

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A Redis server a component of the node depends on (the Redis
// coordinator under locks, the Redis journal and queues under
// messageQueues): how this node reaches it, in /health, and what it sent
// it, on /metrics.

// RedisStats are the counters of one Redis client (adapters/redis.Meter),
// as the node copies them.
type RedisStats struct {
	RoundTrips   uint64
	ConnErrors   uint64 // round trips that got no answer
	ErrorReplies uint64 // commands answered with an error
	ScriptErrors uint64 // of ErrorReplies, those to scripts
	Answered     uint64
	LatencySum   time.Duration
	Buckets      []LatencyBucket // cumulative counts
	P50, P99     time.Duration   // of the latest round trips
}

// LatencyBucket is one bucket of a cumulative latency histogram.
type LatencyBucket struct {
	UpperBound time.Duration
	Count      uint64
}

// RedisSource is one Redis client of the node: its role ("locks",
// "journal"), the server's address, its counters and a ping.
type RedisSource struct {
	Role  string
	Addr  string
	Stats func() RedisStats
	Ping  func() (time.Duration, error)
}

// RedisHealth is a component's Redis server as this node reaches it: a
// PING's round trip (-1 when it failed, with the error), and the latency
// and errors of the round trips so far.
type RedisHealth struct {
	Addr         string  `json:"addr"`
	PingMs       float64 `json:"pingMs"`
	Error        string  `json:"error,omitempty"`
	P50Ms        float64 `json:"p50Ms"`
	P99Ms        float64 `json:"p99Ms"`
	RoundTrips   uint64  `json:"roundTrips"`
	ConnErrors   uint64  `json:"connectionErrors"`
	ErrorReplies uint64  `json:"errorReplies"`
	ScriptErrors uint64  `json:"scriptErrors"`
}

// CheckRedis pings src's server and reads its counters.
func CheckRedis(src RedisSource) *RedisHealth {
	st := src.Stats()
	h := &RedisHealth{Addr: src.Addr, P50Ms: ms(st.P50), P99Ms: ms(st.P99),
		RoundTrips: st.RoundTrips, ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies, ScriptErrors: st.ScriptErrors}
	d, err := src.Ping()
	if err != nil {
		h.PingMs, h.Error = -1, err.Error()
	} else {
		h.PingMs = ms(d)
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reason is why the server makes its component degraded, or "".
func (h *RedisHealth) reason() string {
	if h == nil || h.Error == "" {
		return ""
	}
	return fmt.Sprintf("redis at %s does not answer: %s", h.Addr, h.Error)
}

var (
	descRedisRoundTrips = prometheus.NewDesc("loom_redis_round_trips_total", "Round trips to Redis (a command alone, or a pipeline), by role (locks, journal).", []string{"role"}, nil)
	descRedisErrors     = prometheus.NewDesc("loom_redis_errors_total", "Redis failures by role and kind: connection (no answer), reply (an error reply), script (an error reply to a script).", []string{"role", "kind"}, nil)
	descRedisLatency    = prometheus.NewDesc("loom_redis_round_trip_seconds", "Latency of answered round trips to Redis, by role.", []string{"role"}, nil)
)

// redisCollector reads the Redis clients' counters at scrape time.
type redisCollector struct {
	mu      sync.Mutex
	sources []RedisSource
}

func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRedisRoundTrips
	ch <- descRedisErrors
	ch <- descRedisLatency
}

func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := slices.Clone(c.sources)
	c.mu.Unlock()
	for _, s := range sources {
		st := s.Stats()
		ch <- prometheus.MustNewConstMetric(descRedisRoundTrips, prometheus.CounterValue, float64(st.RoundTrips), s.Role)
		ch <- prometheus.MustNewConstMetric(descRedisErrors, prometheus.CounterValue, float64(st.ConnErrors), s.Role, "connection")
		ch <- prometheus.MustNewConstMetric(descRedisErrors, prometheus.CounterValue, float64(st.ErrorReplies-st.ScriptErrors), s.Role, "reply")
		ch <- prometheus.MustNewConstMetric(descRedisErrors, prometheus.CounterValue, float64(st.ScriptErrors), s.Role, "script")
		buckets := make(map[float64]uint64, len(st.Buckets))
		for _, b := range st.Buckets {
			buckets[b.UpperBound.Seconds()] = b.Count
		}
		ch <- prometheus.MustNewConstHistogram(descRedisLatency, st.Answered, st.LatencySum.Seconds(), buckets, s.Role)
	}
}

// AddRedis adds a Redis client's counters to /metrics.
func (m *Metrics) AddRedis(s RedisSource) {
	m.redisOnce.Do(func() { m.reg.MustRegister(&m.redis) })
	m.redis.mu.Lock()
	m.redis.sources = append(m.redis.sources, s)
	m.redis.mu.Unlock()
}
