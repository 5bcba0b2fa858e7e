package observability

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The Cosmos DB account components of the node depend on (the Cosmos DB
// coordinator under locks, the Cosmos DB journal): how this node reaches
// it, in /health (component cosmos), and what it sent it, on /metrics.
// The counterpart of postgres.go.

// CosmosStats are the counters of one client (adapters/cosmos.Meter), as
// the node copies them.
type CosmosStats struct {
	RoundTrips      uint64 // requests sent, SDK retries included
	Answered        uint64
	TransportErrors uint64 // requests that got no answer
	Throttled       uint64 // 429
	ServerErrors    uint64 // 408, 5xx
	ClientErrors    uint64 // other 4xx than 404, 409, 412
	// The answers the adapters expect as part of their protocol.
	NotFound, Conflicts, PreconditionFailed uint64
	RequestCharge                           float64 // RU
	LatencySum                              time.Duration
	Buckets                                 []LatencyBucket // cumulative counts
	P50, P99                                time.Duration
	Ops                                     []CosmosOpStats
}

// CosmosOpStats are one operation's counters (read, create, replace, ...).
type CosmosOpStats struct {
	Op            string
	RoundTrips    uint64
	Errors        uint64
	RequestCharge float64
}

// CosmosSource is one Cosmos DB client of the node: its role ("locks",
// "journal"), the endpoint's address, its counters and a ping.
type CosmosSource struct {
	Role  string
	Addr  string
	Stats func() CosmosStats
	Ping  func() (time.Duration, error)
}

// CosmosHealth is the component cosmos of /health: each client's account
// as this node reaches it. Degraded when a ping fails (the locks
// component turns unhealthy by itself once the session may have lapsed).
type CosmosHealth struct {
	Status  Status                       `json:"status"`
	Reasons []string                     `json:"reasons,omitempty"`
	Roles   map[string]*CosmosRoleHealth `json:"roles"`
}

// CosmosRoleHealth is one client: a ping's round trip (a read of the
// database; -1 when it failed, with the error), and the latency, errors
// and request units of the requests so far.
type CosmosRoleHealth struct {
	Addr          string  `json:"addr"`
	PingMs        float64 `json:"pingMs"`
	Error         string  `json:"error,omitempty"`
	P50Ms         float64 `json:"p50Ms"`
	P99Ms         float64 `json:"p99Ms"`
	RoundTrips    uint64  `json:"roundTrips"`
	Errors        uint64  `json:"errors"`
	Throttled     uint64  `json:"throttled"`
	RequestCharge float64 `json:"requestUnits"`
}

// CheckCosmos pings each source's account and reads its counters.
func CheckCosmos(srcs ...CosmosSource) *CosmosHealth {
	h := &CosmosHealth{Roles: map[string]*CosmosRoleHealth{}}
	for _, src := range srcs {
		st := src.Stats()
		r := &CosmosRoleHealth{Addr: src.Addr, P50Ms: ms(st.P50), P99Ms: ms(st.P99), RoundTrips: st.RoundTrips,
			Errors: st.TransportErrors + st.Throttled + st.ServerErrors + st.ClientErrors, Throttled: st.Throttled,
			RequestCharge: st.RequestCharge}
		d, err := src.Ping()
		if err != nil {
			r.PingMs, r.Error = -1, err.Error()
		} else {
			r.PingMs = ms(d)
		}
		h.Roles[src.Role] = r
	}
	h.Check()
	return h
}

// Check applies the rule and returns the status.
func (h *CosmosHealth) Check() Status {
	h.Status, h.Reasons = Healthy, nil
	roles := make([]string, 0, len(h.Roles))
	for r := range h.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, role := range roles {
		if r := h.Roles[role]; r.Error != "" {
			h.Status = Degraded
			h.Reasons = append(h.Reasons, fmt.Sprintf("cosmos at %s (%s) does not answer: %s", r.Addr, role, r.Error))
		}
	}
	return h.Status
}

var (
	descCosmosRequests = prometheus.NewDesc("loom_cosmos_requests_total", "Requests to Cosmos DB (SDK retries included), by role (locks, journal) and operation (read, create, replace, upsert, delete, patch, query, batch, meta).", []string{"role", "op"}, nil)
	descCosmosRU       = prometheus.NewDesc("loom_cosmos_request_units_total", "Request units Cosmos DB charged, by role and operation.", []string{"role", "op"}, nil)
	descCosmosErrors   = prometheus.NewDesc("loom_cosmos_errors_total", "Failed Cosmos DB requests by role and kind: transport (no answer), throttled (429), server (408, 5xx), client (other 4xx than 404, 409, 412).", []string{"role", "kind"}, nil)
	descCosmosAnswers  = prometheus.NewDesc("loom_cosmos_refusals_total", "Cosmos DB answers the adapters expect as part of their protocol, by role and status: not_found (404), conflict (409, a create that lost), precondition_failed (412, an etag that moved).", []string{"role", "status"}, nil)
	descCosmosLatency  = prometheus.NewDesc("loom_cosmos_request_seconds", "Latency of answered Cosmos DB requests, by role.", []string{"role"}, nil)
)

// cosmosCollector reads the clients' counters at scrape time.
type cosmosCollector struct {
	mu      sync.Mutex
	sources []CosmosSource
}

func (c *cosmosCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCosmosRequests
	ch <- descCosmosRU
	ch <- descCosmosErrors
	ch <- descCosmosAnswers
	ch <- descCosmosLatency
}

func (c *cosmosCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := slices.Clone(c.sources)
	c.mu.Unlock()
	for _, s := range sources {
		st := s.Stats()
		for _, op := range st.Ops {
			ch <- prometheus.MustNewConstMetric(descCosmosRequests, prometheus.CounterValue, float64(op.RoundTrips), s.Role, op.Op)
			ch <- prometheus.MustNewConstMetric(descCosmosRU, prometheus.CounterValue, op.RequestCharge, s.Role, op.Op)
		}
		for _, e := range []struct {
			kind string
			n    uint64
		}{{"transport", st.TransportErrors}, {"throttled", st.Throttled}, {"server", st.ServerErrors}, {"client", st.ClientErrors}} {
			ch <- prometheus.MustNewConstMetric(descCosmosErrors, prometheus.CounterValue, float64(e.n), s.Role, e.kind)
		}
		for _, a := range []struct {
			status string
			n      uint64
		}{{"not_found", st.NotFound}, {"conflict", st.Conflicts}, {"precondition_failed", st.PreconditionFailed}} {
			ch <- prometheus.MustNewConstMetric(descCosmosAnswers, prometheus.CounterValue, float64(a.n), s.Role, a.status)
		}
		buckets := make(map[float64]uint64, len(st.Buckets))
		for _, b := range st.Buckets {
			buckets[b.UpperBound.Seconds()] = b.Count
		}
		ch <- prometheus.MustNewConstHistogram(descCosmosLatency, st.Answered, st.LatencySum.Seconds(), buckets, s.Role)
	}
}

// AddCosmos adds a Cosmos DB client's counters to /metrics.
func (m *Metrics) AddCosmos(s CosmosSource) {
	m.cosmosOnce.Do(func() { m.reg.MustRegister(&m.cosmos) })
	m.cosmos.mu.Lock()
	m.cosmos.sources = append(m.cosmos.sources, s)
	m.cosmos.mu.Unlock()
}
