package observability

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The RabbitMQ broker that keeps a node's durable messages
// (messaging.backend rabbitmq): how this node reaches it and how deep its
// queues are, in /health under messageQueues; what this node sent it, on
// /metrics. The counterpart of postgres.go.

// RabbitMQStats are the counters of the node's broker connection
// (adapters/rabbitmq.Meter), as the node copies them.
type RabbitMQStats struct {
	Publishes, Acks, Nacks, Gets  uint64
	ConnErrors, ErrorReplies      uint64
	Retries, DeadLettered         uint64
	Dials, DialErrors, Reconnects uint64
	Answered                      uint64
	LatencySum                    time.Duration
	Buckets                       []LatencyBucket // cumulative counts
	P50, P99                      time.Duration   // of the latest round trips
}

// RabbitMQQueues are the broker's queue depths.
type RabbitMQQueues struct {
	Ready   int `json:"ready"`
	Delayed int `json:"delayed"`
	Dead    int `json:"dead"`
}

// RabbitMQSource is the node's broker: its address (host:port, never the
// credentials), counters, queue depths and a ping.
type RabbitMQSource struct {
	Addr   string
	Stats  func() RabbitMQStats
	Queues func() (RabbitMQQueues, error)
	Ping   func() (time.Duration, error)
}

// RabbitMQHealth is the broker as this node reaches it: a ping's round
// trip (-1 when it failed, with the error), its queues' depths, and the
// latency and errors of this node's round trips so far.
type RabbitMQHealth struct {
	Addr         string          `json:"addr"`
	PingMs       float64         `json:"pingMs"`
	Error        string          `json:"error,omitempty"`
	Queues       *RabbitMQQueues `json:"queues,omitempty"`
	P50Ms        float64         `json:"p50Ms"`
	P99Ms        float64         `json:"p99Ms"`
	Publishes    uint64          `json:"publishes"`
	ConnErrors   uint64          `json:"connectionErrors"`
	ErrorReplies uint64          `json:"errorReplies"`
	Reconnects   uint64          `json:"reconnects"`
}

// CheckRabbitMQ pings src's broker and reads its counters and queues.
func CheckRabbitMQ(src RabbitMQSource) *RabbitMQHealth {
	st := src.Stats()
	h := &RabbitMQHealth{Addr: src.Addr, P50Ms: ms(st.P50), P99Ms: ms(st.P99), Publishes: st.Publishes,
		ConnErrors: st.ConnErrors, ErrorReplies: st.ErrorReplies, Reconnects: st.Reconnects}
	d, err := src.Ping()
	if err != nil {
		h.PingMs, h.Error = -1, err.Error()
		return h
	}
	h.PingMs = ms(d)
	if q, err := src.Queues(); err == nil {
		h.Queues = &q
	} else {
		h.Error = "reading the queues: " + err.Error()
	}
	return h
}

// reason is why the broker makes the queues' component degraded, or "".
func (h *RabbitMQHealth) reason() string {
	if h == nil || h.Error == "" {
		return ""
	}
	return fmt.Sprintf("rabbitmq at %s: %s", h.Addr, h.Error)
}

var (
	descRabbitOps     = prometheus.NewDesc("loom_rabbitmq_operations_total", "Operations on the RabbitMQ broker: publish (confirmed), ack, nack, get (dead-letter scans).", []string{"op"}, nil)
	descRabbitErrors  = prometheus.NewDesc("loom_rabbitmq_errors_total", "RabbitMQ failures by kind: connection (no answer), reply (refused: a negative confirm, an unroutable message, a channel closed by the broker), dial (a failed connection attempt).", []string{"kind"}, nil)
	descRabbitEvents  = prometheus.NewDesc("loom_rabbitmq_events_total", "Message events on this node: retry (a failed delivery retried), dead_lettered (moved to the dead letters by this node), reconnect (a connection restored after a loss).", []string{"event"}, nil)
	descRabbitLatency = prometheus.NewDesc("loom_rabbitmq_round_trip_seconds", "Latency of answered round trips to the RabbitMQ broker (a publish until its confirm, a declare, a get).", nil, nil)
)

// rabbitCollector reads the broker's counters at scrape time.
type rabbitCollector struct {
	mu  sync.Mutex
	src *RabbitMQSource
}

func (c *rabbitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRabbitOps
	ch <- descRabbitErrors
	ch <- descRabbitEvents
	ch <- descRabbitLatency
}

func (c *rabbitCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	if src == nil {
		return
	}
	st := src.Stats()
	for op, v := range map[string]uint64{"publish": st.Publishes, "ack": st.Acks, "nack": st.Nacks, "get": st.Gets} {
		ch <- prometheus.MustNewConstMetric(descRabbitOps, prometheus.CounterValue, float64(v), op)
	}
	for kind, v := range map[string]uint64{"connection": st.ConnErrors, "reply": st.ErrorReplies, "dial": st.DialErrors} {
		ch <- prometheus.MustNewConstMetric(descRabbitErrors, prometheus.CounterValue, float64(v), kind)
	}
	for ev, v := range map[string]uint64{"retry": st.Retries, "dead_lettered": st.DeadLettered, "reconnect": st.Reconnects} {
		ch <- prometheus.MustNewConstMetric(descRabbitEvents, prometheus.CounterValue, float64(v), ev)
	}
	buckets := make(map[float64]uint64, len(st.Buckets))
	for _, b := range st.Buckets {
		buckets[b.UpperBound.Seconds()] = b.Count
	}
	ch <- prometheus.MustNewConstHistogram(descRabbitLatency, st.Answered, st.LatencySum.Seconds(), buckets)
}

// SetRabbitMQ puts the broker's counters on /metrics.
func (m *Metrics) SetRabbitMQ(s RabbitMQSource) {
	m.rabbitOnce.Do(func() { m.reg.MustRegister(&m.rabbit) })
	m.rabbit.mu.Lock()
	m.rabbit.src = &s
	m.rabbit.mu.Unlock()
}
