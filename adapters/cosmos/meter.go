package cosmos

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Meter counts the requests a client sends to Cosmos DB and how they fare:
// round trips by operation, request units charged, answers by kind and
// latency, for /health and /metrics. Open installs it in the client's
// pipeline as a per-attempt policy, so an SDK retry counts as a round trip
// of its own. One Meter may serve several clients and then counts them
// all. The zero Meter is ready to use; it is safe for concurrent use and
// costs a few atomic adds and a clock read per request.
//
// What it counts:
//
//   - A round trip is one HTTP request, answered or not, by operation
//     (Ops): read, create, replace, upsert, delete, patch, query, batch and
//     meta (the account, database, container and partition-key-range
//     requests the SDK makes for itself).
//   - RequestCharge sums the x-ms-request-charge header of the answers:
//     what the requests cost in request units (RU). The test server's
//     charges are not Cosmos DB's.
//   - Answers the adapters expect as part of their protocol are counted
//     apart from errors: NotFound (404), Conflicts (409, a create that
//     lost) and PreconditionFailed (412, an etag that moved).
//   - Throttled counts 429s (over the provisioned RU/s); ServerErrors 408
//     and 5xx; ClientErrors other 4xx (an unauthorized key, a request too
//     large); TransportErrors the requests that got no answer.
//
// Latency is measured per answered request, from sending to the answer's
// headers.
type Meter struct {
	roundTrips, answered, transportErrs     atomic.Uint64
	notFound, conflicts, preconditionFailed atomic.Uint64
	throttled, serverErrors, clientErrors   atomic.Uint64
	chargeMilli                             atomic.Uint64 // RU × 1000
	latencySum, last                        atomic.Int64  // nanoseconds
	buckets                                 [len(LatencyBounds)]atomic.Uint64
	recent                                  [recentSize]atomic.Int64
	recentNext                              atomic.Uint64
	ops                                     [numOps]opCounters
}

type opCounters struct {
	roundTrips, errors, chargeMilli atomic.Uint64
	latencySum                      atomic.Int64
}

var _ policy.Policy = (*Meter)(nil)

// Operations, as Stats.Ops names them.
const (
	OpRead    = "read"
	OpCreate  = "create"
	OpReplace = "replace"
	OpUpsert  = "upsert"
	OpDelete  = "delete"
	OpPatch   = "patch"
	OpQuery   = "query"
	OpBatch   = "batch"
	OpMeta    = "meta"
)

// Ops lists the operations in the order Stats.Ops holds them.
var Ops = [...]string{OpRead, OpCreate, OpReplace, OpUpsert, OpDelete, OpPatch, OpQuery, OpBatch, OpMeta}

const numOps = len(Ops)

// LatencyBounds are the upper bounds of the latency histogram's buckets,
// in the manner of Prometheus: from 250 µs to 5 s.
var LatencyBounds = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

const recentSize = 256

// Stats is what a Meter has counted since it was made. Fields are read
// one by one, so a Stats taken under load may be a request out of step
// between fields.
type Stats struct {
	RoundTrips      uint64  // every request sent (SDK retries included)
	Answered        uint64  // of RoundTrips, those that got an answer
	TransportErrors uint64  // of RoundTrips, those that got none
	RequestCharge   float64 // request units charged, summed

	NotFound           uint64 // 404
	Conflicts          uint64 // 409
	PreconditionFailed uint64 // 412
	Throttled          uint64 // 429
	ServerErrors       uint64 // 408, 5xx
	ClientErrors       uint64 // other 4xx

	Ops []OpStats // one per operation, in the order of Ops

	// Latency of the answered requests: their sum, a histogram with
	// cumulative counts over LatencyBounds, the latest, and the median
	// and 99th percentile of the latest Recent of them (at most 256).
	LatencySum time.Duration
	Buckets    []Bucket
	Last       time.Duration
	P50, P99   time.Duration
	Recent     int
}

// Errors is every request that failed: no answer, throttled, or an error
// status other than the expected 404, 409 and 412.
func (s Stats) Errors() uint64 {
	return s.TransportErrors + s.Throttled + s.ServerErrors + s.ClientErrors
}

// OpStats is what a Meter counted for one operation.
type OpStats struct {
	Op            string
	RoundTrips    uint64
	Errors        uint64 // as Stats.Errors counts them
	RequestCharge float64
	LatencySum    time.Duration // of the answered ones
}

// Bucket is one bucket of a latency histogram: Count requests took at
// most UpperBound.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

// Snapshot returns the counts so far. A nil Meter has counted nothing.
func (m *Meter) Snapshot() Stats {
	if m == nil {
		return Stats{}
	}
	s := Stats{
		RoundTrips:         m.roundTrips.Load(),
		Answered:           m.answered.Load(),
		TransportErrors:    m.transportErrs.Load(),
		RequestCharge:      float64(m.chargeMilli.Load()) / 1000,
		NotFound:           m.notFound.Load(),
		Conflicts:          m.conflicts.Load(),
		PreconditionFailed: m.preconditionFailed.Load(),
		Throttled:          m.throttled.Load(),
		ServerErrors:       m.serverErrors.Load(),
		ClientErrors:       m.clientErrors.Load(),
		LatencySum:         time.Duration(m.latencySum.Load()),
		Last:               time.Duration(m.last.Load()),
		Buckets:            make([]Bucket, len(LatencyBounds)),
		Ops:                make([]OpStats, numOps),
	}
	var cum uint64
	for i, b := range LatencyBounds {
		cum += m.buckets[i].Load()
		s.Buckets[i] = Bucket{UpperBound: b, Count: cum}
	}
	for i, op := range Ops {
		c := &m.ops[i]
		s.Ops[i] = OpStats{Op: op, RoundTrips: c.roundTrips.Load(), Errors: c.errors.Load(),
			RequestCharge: float64(c.chargeMilli.Load()) / 1000, LatencySum: time.Duration(c.latencySum.Load())}
	}
	n := min(m.recentNext.Load(), recentSize)
	if n > 0 {
		recent := make([]time.Duration, n)
		for i := range recent {
			recent[i] = time.Duration(m.recent[i].Load())
		}
		slices.Sort(recent)
		s.Recent = int(n)
		s.P50 = recent[(n-1)*50/100]
		s.P99 = recent[(n-1)*99/100]
	}
	return s
}

// Do implements policy.Policy: it sends req on and counts the outcome.
func (m *Meter) Do(req *policy.Request) (*http.Response, error) {
	op := opOf(req.Raw())
	c := &m.ops[op]
	m.roundTrips.Add(1)
	c.roundTrips.Add(1)
	start := time.Now()
	resp, err := req.Next()
	if resp == nil {
		m.transportErrs.Add(1)
		c.errors.Add(1)
		return resp, err
	}
	d := time.Since(start)
	m.answer(d)
	c.latencySum.Add(int64(d))
	if ru, perr := strconv.ParseFloat(resp.Header.Get("x-ms-request-charge"), 64); perr == nil && ru > 0 {
		milli := uint64(ru*1000 + 0.5)
		m.chargeMilli.Add(milli)
		c.chargeMilli.Add(milli)
	}
	switch s := resp.StatusCode; {
	case s < 400:
	case s == http.StatusNotFound:
		m.notFound.Add(1)
	case s == http.StatusConflict:
		m.conflicts.Add(1)
	case s == http.StatusPreconditionFailed:
		m.preconditionFailed.Add(1)
	case s == http.StatusTooManyRequests:
		m.throttled.Add(1)
		c.errors.Add(1)
	case s == http.StatusRequestTimeout || s >= 500:
		m.serverErrors.Add(1)
		c.errors.Add(1)
	default:
		m.clientErrors.Add(1)
		c.errors.Add(1)
	}
	return resp, err
}

// opOf classifies a request by its method and resource path.
func opOf(r *http.Request) int {
	path := strings.TrimSuffix(r.URL.Path, "/")
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	// dbs/{db}/colls/{coll}/docs[/{id}]
	if len(parts) < 5 || parts[4] != "docs" {
		return index(OpMeta)
	}
	if len(parts) == 6 {
		switch r.Method {
		case http.MethodGet:
			return index(OpRead)
		case http.MethodPut:
			return index(OpReplace)
		case http.MethodDelete:
			return index(OpDelete)
		case http.MethodPatch:
			return index(OpPatch)
		}
		return index(OpMeta)
	}
	h := r.Header
	switch {
	case r.Method != http.MethodPost:
		return index(OpMeta) // a read feed
	case strings.EqualFold(h.Get("x-ms-documentdb-isquery"), "true"):
		return index(OpQuery)
	case strings.EqualFold(h.Get("x-ms-cosmos-is-batch-request"), "true"):
		return index(OpBatch)
	case strings.EqualFold(h.Get("x-ms-documentdb-is-upsert"), "true"):
		return index(OpUpsert)
	}
	return index(OpCreate)
}

func index(op string) int { return slices.Index(Ops[:], op) }

func (m *Meter) answer(d time.Duration) {
	m.answered.Add(1)
	m.latencySum.Add(int64(d))
	m.last.Store(int64(d))
	for i, b := range LatencyBounds {
		if d <= b {
			m.buckets[i].Add(1)
			break
		}
	}
	m.recent[(m.recentNext.Add(1)-1)%recentSize].Store(int64(d))
}
