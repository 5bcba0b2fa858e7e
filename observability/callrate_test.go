package observability

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestLatencyIndex(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{50 * time.Microsecond, 0},
		{51 * time.Microsecond, 1},
		{100 * time.Microsecond, 1},
		{101 * time.Microsecond, 2},
		{time.Millisecond, 5}, // 50 µs × 2^5 = 1.6 ms
		{13 * time.Second, 18},
		{14 * time.Second, 19},
		{time.Hour, 19},
	} {
		if got := latencyIndex(tc.d); got != tc.want {
			t.Errorf("latencyIndex(%v) = %d, want %d", tc.d, got, tc.want)
		}
		if i := latencyIndex(tc.d); i < len(RateLatencyBounds) && tc.d.Seconds() > RateLatencyBounds[i]+1e-12 {
			t.Errorf("%v is above its bucket's bound %g", tc.d, RateLatencyBounds[i])
		}
	}
}

// TestCallRates: calls land in the bucket of the time they end, the
// window slides (a slot reused for a new bucket starts from zero),
// errors and latencies are kept per bucket, and a pair without recent
// calls is left out.
func TestCallRates(t *testing.T) {
	m := NewMetrics()
	t0 := time.Unix(1_000_000, 0) // a bucket boundary
	st := m.stat("counter", "add")
	for i := range 10 {
		var err error
		if i%5 == 0 {
			err = errors.New("boom")
		}
		st.rate.add(t0.Add(time.Duration(i)*time.Second), time.Millisecond, err != nil)
	}
	st.rate.add(t0.Add(15*time.Second), 2*time.Second, false)
	m.stat("counter", "get") // no calls: not listed

	r := m.CallRates(t0.Add(15 * time.Second))
	if r.BucketSeconds != 10 || len(r.Series) != 1 {
		t.Fatalf("rates: %+v", r)
	}
	s := r.Series[0]
	if s.Type != "counter" || s.Method != "add" || len(s.Calls) != RateBuckets {
		t.Fatalf("series: %+v", s)
	}
	last := RateBuckets - 1
	if s.Calls[last-1] != 10 || s.Errors[last-1] != 2 || s.Calls[last] != 1 || s.Errors[last] != 0 {
		t.Fatalf("calls %v errors %v", s.Calls[last-1:], s.Errors[last-1:])
	}
	if r.First != bucketOf(t0)+1-int64(last) {
		t.Fatalf("first bucket %d", r.First)
	}
	if p := Quantile(0.99, s.Latency[last-1]); p <= 0.0008 || p > 0.0016 {
		t.Fatalf("p99 of 1 ms calls = %g s", p)
	}
	if p := Quantile(0.99, s.Latency[last]); p < 1.6 || p > 3.3 {
		t.Fatalf("p99 of a 2 s call = %g s", p)
	}
	if Quantile(0.99, nil) != -1 {
		t.Fatal("the quantile of no calls is not -1")
	}

	// One full window later the slot of t0's bucket is reused: it starts
	// from zero, and t0's calls are out of the window; the call at 15 s
	// is its first bucket.
	later := t0.Add(RateBuckets * RateBucket)
	st.rate.add(later, time.Millisecond, false)
	r = m.CallRates(later)
	s = r.Series[0]
	var total uint64
	for _, c := range s.Calls {
		total += c
	}
	if s.Calls[last] != 1 || s.Calls[0] != 1 || total != 2 {
		t.Fatalf("after a window: calls %v", s.Calls)
	}
	if r = m.CallRates(later.Add(RateBuckets * RateBucket)); len(r.Series) != 0 {
		t.Fatalf("nothing recent, yet: %+v", r.Series)
	}
}

// TestMergeCallRates: series of the same pair add up bucket by bucket,
// aligned by bucket index; buckets outside the first's window drop.
func TestMergeCallRates(t *testing.T) {
	a := CallRates{First: 100, BucketSeconds: 10, Series: []CallSeries{{Type: "t", Method: "m", Calls: make([]uint64, RateBuckets), Errors: make([]uint64, RateBuckets), Latency: make([][]uint64, RateBuckets)}}}
	b := CallRates{First: 101, BucketSeconds: 10, Series: []CallSeries{
		{Type: "t", Method: "m", Calls: make([]uint64, RateBuckets), Errors: make([]uint64, RateBuckets), Latency: make([][]uint64, RateBuckets)},
		{Type: "a", Method: "x", Calls: make([]uint64, RateBuckets), Errors: make([]uint64, RateBuckets)},
	}}
	a.Series[0].Calls[1], a.Series[0].Latency[1] = 2, []uint64{2}
	b.Series[0].Calls[0], b.Series[0].Errors[0], b.Series[0].Latency[0] = 3, 1, []uint64{0, 3}
	b.Series[0].Calls[RateBuckets-1] = 7 // bucket 131: after a's window
	b.Series[1].Calls[5] = 1
	m := MergeCallRates(a, b)
	if m.First != 100 || len(m.Series) != 2 || m.Series[0].Type != "a" {
		t.Fatalf("merged: %+v", m)
	}
	tm := m.Series[1]
	if tm.Calls[1] != 5 || tm.Errors[1] != 1 || tm.Latency[1][0] != 2 || tm.Latency[1][1] != 3 {
		t.Fatalf("bucket 101: calls %d errors %d latency %v", tm.Calls[1], tm.Errors[1], tm.Latency[1])
	}
	var total uint64
	for _, c := range tm.Calls {
		total += c
	}
	if total != 5 || m.Series[0].Calls[6] != 1 {
		t.Fatalf("calls %v / %v", tm.Calls, m.Series[0].Calls)
	}
	if q := Quantile(0.5, tm.Latency[1]); math.Abs(q-(0.00005+0.00005/6)) > 1e-12 {
		t.Fatalf("median of 2 ≤50µs and 3 ≤100µs calls: %g", q)
	}
}
