package observability

import (
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Recent call rates: for the dashboard (GET /v1/stats/calls), every
// (type, method) pair counted by loom_calls_total also keeps, in memory,
// its calls, errors and a latency histogram per RateBucket of wall-clock
// time over the last RateBuckets buckets. Prometheus has the exact
// counters; these are what a page can show without a Prometheus server.
//
// The buckets are a ring of fixed slots updated with atomics: the first
// call of a new bucket clears the slot it reuses, and a call recorded on
// another core at that instant may be lost. The numbers are for display,
// not for accounting.
const (
	// RateBucket is the width of one bucket.
	RateBucket = 10 * time.Second
	// RateBuckets is how many buckets a series has: five minutes of
	// complete buckets and the current, partial one.
	RateBuckets = 31
)

// RateLatencyBounds are the upper bounds, in seconds, of a rate bucket's
// latency histogram (the loom_call_duration_seconds buckets: 50 µs
// doubling to ~13 s); a last count holds the slower calls.
var RateLatencyBounds = latencyBuckets

// rateHist is len(RateLatencyBounds) bounded counts and the overflow.
const rateHist = 20

// rateSlot is one bucket of one (type, method).
type rateSlot struct {
	// epoch is the bucket's index (unix time / RateBucket) + 1; 0: unused.
	epoch  atomic.Int64
	calls  atomic.Uint64
	errors atomic.Uint64
	hist   [rateHist]atomic.Uint64
}

// rateRing is the recent buckets of one (type, method).
type rateRing struct {
	slots [RateBuckets]rateSlot
}

// bucketOf is the index of the bucket holding t.
func bucketOf(t time.Time) int64 { return t.UnixNano() / int64(RateBucket) }

// latencyIndex is the histogram count d falls in: the first bound >= d.
func latencyIndex(d time.Duration) int {
	const base = 50 * time.Microsecond
	if d <= base {
		return 0
	}
	return min(bits.Len64(uint64((d-1)/base)), rateHist-1)
}

// add records one call that ended at now after d.
func (r *rateRing) add(now time.Time, d time.Duration, failed bool) {
	b := bucketOf(now)
	s := &r.slots[b%RateBuckets]
	if e := s.epoch.Load(); e != b+1 && s.epoch.CompareAndSwap(e, b+1) {
		s.calls.Store(0)
		s.errors.Store(0)
		for i := range s.hist {
			s.hist[i].Store(0)
		}
	}
	s.calls.Add(1)
	if failed {
		s.errors.Add(1)
	}
	s.hist[latencyIndex(d)].Add(1)
}

// CallSeries is one (type, method)'s recent buckets, oldest first: the
// last is the current, partial bucket. Latency holds each bucket's
// histogram (counts per RateLatencyBounds, then the slower calls), nil for
// a bucket without calls.
type CallSeries struct {
	Type    string     `json:"type"`
	Method  string     `json:"method"`
	Calls   []uint64   `json:"calls"`
	Errors  []uint64   `json:"errors"`
	Latency [][]uint64 `json:"latency,omitempty"`
}

// CallRates is the recent call series of a node, or of several merged.
type CallRates struct {
	// First is the index of the first bucket (unix time / RateBucket);
	// bucket i starts at (First+i) × RateBucket.
	First         int64        `json:"first"`
	BucketSeconds int          `json:"bucketSeconds"`
	Series        []CallSeries `json:"series"`
}

// CallRates reads the recent buckets of every (type, method) that has
// calls in them, sorted by type and method, the last bucket the one
// holding now.
func (m *Metrics) CallRates(now time.Time) CallRates {
	last := bucketOf(now)
	out := CallRates{First: last - RateBuckets + 1, BucketSeconds: int(RateBucket / time.Second), Series: []CallSeries{}}
	m.callStats.Range(func(k, v any) bool {
		key, st := k.(callKey), v.(*callStat)
		cs := CallSeries{Type: key.typ, Method: key.method, Calls: make([]uint64, RateBuckets), Errors: make([]uint64, RateBuckets), Latency: make([][]uint64, RateBuckets)}
		seen := false
		for i := range RateBuckets {
			b := out.First + int64(i)
			s := &st.rate.slots[b%RateBuckets]
			if s.epoch.Load() != b+1 {
				continue
			}
			n := s.calls.Load()
			if n == 0 {
				continue
			}
			seen = true
			cs.Calls[i], cs.Errors[i] = n, s.errors.Load()
			h := make([]uint64, rateHist)
			for j := range h {
				h[j] = s.hist[j].Load()
			}
			cs.Latency[i] = h
		}
		if seen {
			out.Series = append(out.Series, cs)
		}
		return true
	})
	sortSeries(out.Series)
	return out
}

func sortSeries(s []CallSeries) {
	slices.SortFunc(s, func(a, b CallSeries) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
}

// MergeCallRates adds the series of several nodes, aligned on the bucket
// indexes of the first (buckets outside its range are dropped: a node
// whose clock is off by more than the window adds nothing).
func MergeCallRates(rates ...CallRates) CallRates {
	if len(rates) == 0 {
		return CallRates{BucketSeconds: int(RateBucket / time.Second), Series: []CallSeries{}}
	}
	out := CallRates{First: rates[0].First, BucketSeconds: rates[0].BucketSeconds, Series: []CallSeries{}}
	idx := map[callKey]int{}
	for _, r := range rates {
		for _, s := range r.Series {
			k := callKey{s.Type, s.Method}
			j, ok := idx[k]
			if !ok {
				j = len(out.Series)
				idx[k] = j
				out.Series = append(out.Series, CallSeries{Type: s.Type, Method: s.Method, Calls: make([]uint64, RateBuckets), Errors: make([]uint64, RateBuckets), Latency: make([][]uint64, RateBuckets)})
			}
			dst := &out.Series[j]
			for i := range s.Calls {
				at := int(r.First - out.First + int64(i))
				if at < 0 || at >= RateBuckets {
					continue
				}
				dst.Calls[at] += s.Calls[i]
				if i < len(s.Errors) {
					dst.Errors[at] += s.Errors[i]
				}
				if i < len(s.Latency) && s.Latency[i] != nil {
					if dst.Latency[at] == nil {
						dst.Latency[at] = make([]uint64, rateHist)
					}
					for h, c := range s.Latency[i] {
						if h < rateHist {
							dst.Latency[at][h] += c
						}
					}
				}
			}
		}
	}
	sortSeries(out.Series)
	return out
}

// Quantile estimates the q-quantile (0 < q <= 1), in seconds, of the
// calls counted in the histograms hs (added together), interpolating
// linearly inside the bucket it falls in, as Prometheus'
// histogram_quantile does; -1 when they count no call. A quantile among
// the calls slower than the last bound is that bound.
func Quantile(q float64, hs ...[]uint64) float64 {
	var sum [rateHist]uint64
	var total uint64
	for _, h := range hs {
		for i, c := range h {
			if i < rateHist {
				sum[i] += c
				total += c
			}
		}
	}
	if total == 0 {
		return -1
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range sum {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			if i >= len(RateLatencyBounds) {
				return RateLatencyBounds[len(RateLatencyBounds)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = RateLatencyBounds[i-1]
			}
			return lo + (RateLatencyBounds[i]-lo)*(rank-seen)/float64(c)
		}
		seen += float64(c)
	}
	return RateLatencyBounds[len(RateLatencyBounds)-1]
}
